//! neutrino on real nodes, as a user's cluster runs it: the chart installed
//! by helm onto kubelets and containerd (scripts/nodes), with the image
//! built from the Dockerfile; pods created with kubectl get their neutrino
//! interfaces from their kubelet, through Multus; helm upgrade rolls the
//! agents under a running ping, and helm uninstall leaves the nodes as
//! they were.

mod support;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use support::control_plane::ControlPlane;
use support::nodes::{CHART_IMAGE, Nodes, WORKLOAD_IMAGE, nodes};

const RELEASE: &str = "neutrino";
const SYSTEM: &str = "neutrino-system";
const TENANT: &str = "tenant-a";

fn apply(cluster: &ControlPlane, objects: &[serde_json::Value]) {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let run = cluster.kubectl_with(&["apply", "-f", "-"], &list.to_string());
    assert!(run.ok, "kubectl apply: {}", run.stderr);
}

/// A busybox pod on `node` with `annotations`.
fn pod(name: &str, node: &str, annotations: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": TENANT, "annotations": annotations},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "main", "image": WORKLOAD_IMAGE, "imagePullPolicy": "Never",
                "command": ["sleep", "3600"],
            }],
        },
    })
}

fn wait_ready(cluster: &ControlPlane, pods: &[&str]) {
    let mut args = vec![
        "--namespace",
        TENANT,
        "wait",
        "--for=condition=Ready",
        "--timeout=60s",
    ];
    let names: Vec<String> = pods.iter().map(|p| format!("pod/{p}")).collect();
    args.extend(names.iter().map(String::as_str));
    let run = cluster.kubectl(&args);
    if !run.ok {
        let described = cluster.kubectl(&["--namespace", TENANT, "describe", "pods"]);
        panic!("{}\n{}", run.stderr, described.stdout);
    }
}

fn exec(cluster: &ControlPlane, pod: &str, command: &[&str]) -> support::control_plane::Run {
    let mut args = vec!["--namespace", TENANT, "exec", pod, "--"];
    args.extend(command);
    cluster.kubectl(&args)
}

fn port_address(cluster: &ControlPlane, port: &str) -> String {
    cluster
        .kubectl_ok(&[
            "--namespace",
            TENANT,
            "get",
            "port",
            port,
            "-o",
            "jsonpath={.status.fixedIPs[0].ipAddress}",
        ])
        .trim()
        .to_string()
}

/// The address a DHCP client in `pod` is offered on `interface`.
fn dhcp_lease(cluster: &ControlPlane, pod: &str, interface: &str) -> String {
    // -s /bin/true: take the lease, configure nothing.
    let run = exec(
        cluster,
        pod,
        &[
            "udhcpc",
            "-i",
            interface,
            "-n",
            "-q",
            "-f",
            "-t",
            "5",
            "-T",
            "1",
            "-s",
            "/bin/true",
        ],
    );
    assert!(run.ok, "udhcpc in {pod}: {}{}", run.stdout, run.stderr);
    let all = format!("{}{}", run.stdout, run.stderr);
    all.lines()
        .find_map(|l| l.split("lease of ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no lease in: {all}"))
        .to_string()
}

fn rolled_out(cluster: &ControlPlane) {
    for workload in ["daemonset/neutrino-agent", "deployment/neutrino-controller"] {
        cluster.kubectl_ok(&[
            "--namespace",
            SYSTEM,
            "rollout",
            "status",
            workload,
            "--timeout=120s",
        ]);
    }
}

/// What the kubelet of `node` logged as a pod's start, in ms: its
/// `podStartSLOduration`, from the pod's creation (kept in whole seconds)
/// to running, image pulls left out. The kubelet logs it when its watch
/// brings the pod's running status after it noted the pod running itself,
/// a moment later; when the watch came first it never does.
fn kubelet_pod_start(nodes: &Nodes, node: &str, pod: &str) -> Option<f64> {
    let wanted = format!("pod=\"{TENANT}/{pod}\"");
    for _ in 0..30 {
        let log = std::fs::read_to_string(nodes.dir.join(node).join("kubelet.log")).unwrap();
        let logged = log
            .lines()
            .filter(|l| l.contains("Observed pod startup duration") && l.contains(&wanted))
            .find_map(|l| l.split("podStartSLOduration=").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|seconds| seconds.parse::<f64>().ok());
        if let Some(seconds) = logged {
            return Some(seconds * 1e3);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// `jsonpath` over the agents' pods, those on `node` when one is named.
fn agent_pods(cluster: &ControlPlane, node: Option<&str>, jsonpath: &str) -> String {
    let on = node.map(|n| format!("spec.nodeName={n}"));
    let mut args = vec![
        "--namespace",
        SYSTEM,
        "get",
        "pods",
        "--selector",
        "app.kubernetes.io/component=agent",
    ];
    if let Some(on) = &on {
        args.extend(["--field-selector", on]);
    }
    let output = format!("jsonpath={jsonpath}");
    args.extend(["-o", &output]);
    cluster.kubectl_ok(&args)
}

/// node-1's agent's log lines since `since`.
fn agent_log(cluster: &ControlPlane, since: &str) -> Vec<serde_json::Value> {
    let pod = agent_pods(cluster, Some("node-1"), "{.items[0].metadata.name}");
    let log = cluster.kubectl_ok(&[
        "--namespace",
        SYSTEM,
        "logs",
        pod.trim(),
        "--container",
        "agent",
        &format!("--since-time={since}"),
    ]);
    log.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn logged_at(line: &serde_json::Value) -> k8s_openapi::jiff::Timestamp {
    line["timestamp"].as_str().unwrap().parse().unwrap()
}

/// The ADDs a log shows served: when each began, and how long it took in ms.
fn adds_served(log: &[serde_json::Value]) -> Vec<(k8s_openapi::jiff::Timestamp, f64)> {
    log.iter()
        .filter(|l| l["message"] == "CNI call served" && l["command"] == "ADD")
        .map(|l| {
            let ms = l["ms"].as_f64().unwrap();
            let took = k8s_openapi::jiff::SignedDuration::from_secs_f64(ms / 1e3);
            (logged_at(l) - took, ms)
        })
        .collect()
}

/// When the Port `port` was made before its pod's sandbox, as a log shows.
fn prepared_at(log: &[serde_json::Value], port: &str) -> Option<k8s_openapi::jiff::Timestamp> {
    (log.iter())
        .find(|l| l["message"] == "Port made before its pod's sandbox" && l["port"] == port)
        .map(logged_at)
}

fn summary(values: &mut [f64]) -> String {
    if values.is_empty() {
        return "none".into();
    }
    values.sort_by(f64::total_cmp);
    format!(
        "{:.0}–{:.0} (median {:.0})",
        values[0],
        values[values.len() - 1],
        values[values.len() / 2]
    )
}

fn footprints(nodes: &Nodes) -> BTreeMap<String, Vec<String>> {
    nodes
        .names
        .iter()
        .map(|node| (node.clone(), nodes.footprint(node)))
        .collect()
}

#[test]
fn the_chart_runs_on_kubelets_and_pods_attach_through_multus() {
    let nodes = nodes();
    let cluster = nodes.cluster;
    let before = footprints(nodes);
    // Multus's CRD, as its own deployment installs it.
    cluster.kubectl_ok(&[
        "apply",
        "--server-side",
        "-f",
        &support::control_plane::tools()
            .parent()
            .unwrap()
            .join("cni-bin/nad-crd.yaml")
            .to_string_lossy(),
    ]);
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/network-attachment-definitions.k8s.cni.cncf.io",
    ]);

    // As a user installs it: the chart's own values, whose image the nodes
    // hold. --wait returns once the controller's and the agents' probes
    // pass.
    let install = cluster.helm(&[
        "install",
        RELEASE,
        "charts/neutrino",
        "--namespace",
        SYSTEM,
        "--create-namespace",
        "--wait",
        "--timeout",
        "3m",
    ]);
    assert!(install.ok, "helm install: {}", install.stderr);
    rolled_out(cluster);
    for node in &nodes.names {
        let installed = nodes.exec(node, &["test", "-x", "/opt/cni/bin/neutrino"]);
        assert!(installed.ok, "the init container put no plugin on {node}");
    }

    // Two pods on two nodes, attached by Multus through a
    // NetworkAttachmentDefinition, and a VM-style pod that names its Port.
    let nad = |name: &str, extra: serde_json::Value| {
        let mut config =
            json!({"cniVersion": "1.0.0", "name": name, "type": "neutrino", "network": "blue"});
        config
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({
            "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name, "namespace": TENANT},
            "spec": {"config": config.to_string()},
        })
    };
    apply(
        cluster,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": TENANT}}),
            json!({
                "apiVersion": "neutrino.dev/v1alpha1", "kind": "Network",
                "metadata": {"name": "blue", "namespace": TENANT},
                "spec": {"type": "vxlan"},
            }),
            json!({
                "apiVersion": "neutrino.dev/v1alpha1", "kind": "Subnet",
                "metadata": {"name": "blue-v4", "namespace": TENANT},
                "spec": {
                    "network": "blue", "cidr": "10.10.0.0/24", "enableDHCP": true,
                    "allocationPools": [{"start": "10.10.0.10", "end": "10.10.0.200"}],
                },
            }),
        ],
    );
    apply(
        cluster,
        &[
            nad("blue", json!({})),
            nad("blue-vm", json!({"podAddresses": false})),
            json!({
                "apiVersion": "neutrino.dev/v1alpha1", "kind": "Port",
                "metadata": {"name": "vm-web", "namespace": TENANT},
                "spec": {"network": "blue"},
            }),
            pod(
                "a",
                "node-1",
                json!({"k8s.v1.cni.cncf.io/networks": "blue"}),
            ),
            pod(
                "b",
                "node-2",
                json!({"k8s.v1.cni.cncf.io/networks": "blue"}),
            ),
        ],
    );
    wait_ready(cluster, &["a", "b"]);
    let a = port_address(cluster, "a-net1");
    let b = port_address(cluster, "b-net1");
    let shown = exec(cluster, "a", &["ip", "-4", "-o", "address", "show", "net1"]);
    assert!(
        shown.stdout.contains(&format!("{a}/24")),
        "a's net1 lacks its Port's {a}: {}",
        shown.stdout
    );
    let ping = exec(cluster, "a", &["ping", "-c", "3", "-w", "10", &b]);
    assert!(ping.ok, "a cannot reach b at {b}: {}", ping.stdout);

    // The agent's probes answer on the node's loopback, and nowhere a pod
    // reaches: not the node's underlay address, not its cluster-network
    // bridge, not across neutrino's network.
    let probe = nodes.exec("node-1", &["curl", "-sf", "http://127.0.0.1:9741/readyz"]);
    assert!(probe.ok, "node-1's agent does not answer its probe");
    for address in ["198.18.0.1", "10.244.1.1", &b] {
        let url = format!("http://{address}:9741/healthz");
        let run = exec(cluster, "a", &["wget", "-q", "-T", "3", "-O-", &url]);
        assert!(!run.ok, "pod a reached the agent's probes at {url}");
    }

    // Pod start, one pod at a time on node-1, with and without a neutrino
    // interface, alternately: as kubectl sees it and as the kubelet does.
    let since = k8s_openapi::jiff::Timestamp::now().to_string();
    let (mut plain, mut attached) = (Vec::new(), Vec::new());
    let (mut kubelet_plain, mut kubelet_attached) = (Vec::new(), Vec::new());
    for i in 0..5 {
        for (name, annotations, into) in [
            (format!("plain-{i}"), json!({}), &mut plain),
            (
                format!("attached-{i}"),
                json!({"k8s.v1.cni.cncf.io/networks": "blue"}),
                &mut attached,
            ),
        ] {
            let started = std::time::Instant::now();
            apply(cluster, &[pod(&name, "node-1", annotations)]);
            wait_ready(cluster, &[&name]);
            into.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    for i in 0..5 {
        kubelet_plain.extend(kubelet_pod_start(nodes, "node-1", &format!("plain-{i}")));
        kubelet_attached.extend(kubelet_pod_start(nodes, "node-1", &format!("attached-{i}")));
    }
    let log = agent_log(cluster, &since);
    let served = adds_served(&log);
    assert_eq!(served.len(), 5, "one ADD for each attached pod");
    let mut adds: Vec<f64> = served.iter().map(|(_, ms)| *ms).collect();
    // Each attached pod's Port was made when the pod was bound, before
    // the kubelet's ADD for its sandbox; how much earlier, in ms.
    let mut ahead: Vec<f64> = (0..5)
        .map(|i| {
            let port = format!("{TENANT}/attached-{i}-net1");
            let made = prepared_at(&log, &port)
                .unwrap_or_else(|| panic!("Port {port} was not made before its pod's sandbox"));
            let (add, _) = served[i];
            add.duration_since(made).as_secs_f64() * 1e3
        })
        .collect();
    eprintln!(
        "pod start on node-1, ms, 5 pods each, min–max (median)\n\
         \x20 kubectl apply to Ready:        without a neutrino interface {}, with one {}\n\
         \x20 the kubelet's podStartSLOduration (from a creation time in whole seconds), \
         for the {} and {} pods it logged: without {}, with {}\n\
         \x20 the agent's CNI ADD for them: {}, its Port made that much earlier: {}",
        summary(&mut plain),
        summary(&mut attached),
        kubelet_plain.len(),
        kubelet_attached.len(),
        summary(&mut kubelet_plain),
        summary(&mut kubelet_attached),
        summary(&mut adds),
        summary(&mut ahead)
    );
    let mut started: Vec<String> = (0..5).map(|i| format!("pod/plain-{i}")).collect();
    started.extend((0..5).map(|i| format!("pod/attached-{i}")));
    let mut delete = vec!["--namespace", TENANT, "delete", "--wait"];
    delete.extend(started.iter().map(String::as_str));
    cluster.kubectl_ok(&delete);

    // The VM's address is its Port's, through DHCP, wherever its pod runs.
    let vm_pod = |node: &str| {
        pod(
            "vm",
            node,
            json!({
                "k8s.v1.cni.cncf.io/networks": "blue-vm",
                "neutrino.dev/ports": json!({"blue-vm": "vm-web"}).to_string(),
            }),
        )
    };
    apply(cluster, &[vm_pod("node-1")]);
    wait_ready(cluster, &["vm"]);
    let vm = port_address(cluster, "vm-web");
    assert_eq!(dhcp_lease(cluster, "vm", "net1"), vm);
    cluster.kubectl_ok(&["--namespace", TENANT, "delete", "pod", "vm", "--wait"]);
    apply(cluster, &[vm_pod("node-2")]);
    wait_ready(cluster, &["vm"]);
    assert_eq!(dhcp_lease(cluster, "vm", "net1"), vm);
    assert_eq!(port_address(cluster, "vm-web"), vm);

    // helm upgrade to another image rolls every agent and controller while
    // a ping runs across the nodes: the kernel keeps forwarding.
    let next = format!("{CHART_IMAGE}-next");
    nodes.tag(CHART_IMAGE, &next);
    let pinging = cluster
        .tool("kubectl")
        .args([
            "--namespace",
            TENANT,
            "exec",
            "a",
            "--",
            "ping",
            "-c",
            "200",
            "-i",
            "0.1",
            "-W",
            "1",
            &b,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let upgrade = cluster.helm(&[
        "upgrade",
        RELEASE,
        "charts/neutrino",
        "--namespace",
        SYSTEM,
        "--set",
        "image.tag=0.1.0-next",
        "--wait",
        "--timeout",
        "3m",
    ]);
    assert!(upgrade.ok, "helm upgrade: {}", upgrade.stderr);
    rolled_out(cluster);
    let images = agent_pods(cluster, None, "{.items[*].spec.containers[0].image}");
    assert!(
        images.split_whitespace().all(|i| i == next) && images.split_whitespace().count() == 2,
        "the agents run {images}"
    );
    let pinged = pinging.wait_with_output().unwrap();
    let summary = String::from_utf8_lossy(&pinged.stdout).into_owned();
    assert!(
        summary.contains(" 0% packet loss"),
        "the ping broke during the upgrade: {summary}"
    );

    // helm uninstall: the workloads gone first, then the release; its hook
    // empties every node before the agents go.
    cluster.kubectl_ok(&["delete", "namespace", TENANT, "--wait", "--timeout=120s"]);
    let uninstall = cluster.helm(&[
        "uninstall",
        RELEASE,
        "--namespace",
        SYSTEM,
        "--wait",
        "--timeout",
        "3m",
    ]);
    assert!(uninstall.ok, "helm uninstall: {}", uninstall.stderr);
    assert_eq!(footprints(nodes), before, "what neutrino left on the nodes");
}
