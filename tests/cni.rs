//! neutrino's CNI plugin as runtimes drive it: the real `cnitool` and the
//! real Multus (both built from the Go module proxy by
//! scripts/install-deps), calling the plugin binary, which asks the agents
//! of a cluster lab on the real control plane. Pods are real Pod objects
//! bound to the lab's nodes; their sandboxes are network namespaces of the
//! test's own.

mod support;

use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use neutrino::dataplane::netns;
use support::{TestLab, eventually};

/// How long the agents and the controller may take to come round.
const MINUTE: Duration = Duration::from_secs(60);
use support::chart::{
    bound_pod, cluster, network_attachment, nothing_was_forbidden, one_lab_at_a_time,
    up_as_the_chart_runs_it,
};
use support::control_plane::{Run, tools};

const NAMESPACE: &str = "tenant-a";

/// Where scripts/install-deps put cnitool, Multus and the NAD CRD.
fn clients() -> PathBuf {
    let dir = tools().parent().unwrap().join("cni-bin");
    assert!(
        dir.join("cnitool").is_file(),
        "{} is missing: run scripts/install-deps --control-plane",
        dir.display()
    );
    dir
}

/// A node's runtime, as the tests play it: a CNI bin directory with the
/// plugin under its type's name (and Debian's loopback, Multus's cluster
/// network), a configuration directory, and the node's agent socket.
struct Runtime {
    bin: PathBuf,
    conf: PathBuf,
    socket: PathBuf,
}

impl Runtime {
    fn new(lab: &TestLab, node: &str) -> Self {
        let root = lab.dir.join(format!("runtime-{node}"));
        let (bin, conf) = (root.join("bin"), root.join("net.d"));
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::copy(env!("CARGO_BIN_EXE_neutrino-cni"), bin.join("neutrino")).unwrap();
        std::fs::copy(clients().join("multus"), bin.join("multus")).unwrap();
        std::fs::copy("/usr/lib/cni/loopback", bin.join("loopback")).unwrap();
        Runtime {
            bin,
            conf,
            socket: lab.lab.files().cni_socket(node),
        }
    }

    /// Writes network configurations, each as `<name>.conf`.
    fn with(self, confs: &[Value]) -> Self {
        for document in confs {
            let name = document["name"].as_str().unwrap();
            std::fs::write(self.conf.join(format!("{name}.conf")), document.to_string()).unwrap();
        }
        self
    }

    /// `cnitool COMMAND NETWORK NETNS` for `pod`'s interface `ifname`.
    fn cnitool(
        &self,
        command: &str,
        network: &str,
        sandbox: &Sandbox,
        ifname: &str,
        capabilities: Option<&Value>,
    ) -> Run {
        let mut run = Command::new(clients().join("cnitool"));
        run.args([command, network, &sandbox.path().to_string_lossy()])
            .env("CNI_PATH", &self.bin)
            .env("NETCONFPATH", &self.conf)
            .env("CNI_IFNAME", ifname)
            .env("NEUTRINO_CNI_SOCKET", &self.socket)
            .env(
                "CNI_ARGS",
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE={NAMESPACE};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
                    sandbox.pod, sandbox.namespace, sandbox.uid
                ),
            );
        if let Some(capabilities) = capabilities {
            run.env("CAP_ARGS", capabilities.to_string());
        }
        run.output().unwrap().into()
    }
}

/// A pod's sandbox: a Pod object bound to a node, and a network namespace.
struct Sandbox {
    pod: String,
    uid: String,
    namespace: String,
}

impl Sandbox {
    fn path(&self) -> PathBuf {
        netns::path(&self.namespace)
    }

    /// Runs `command` in the sandbox: its exit code and output.
    fn exec(&self, command: &[&str]) -> (i32, String) {
        support::exec_in(&self.namespace, command)
    }

    fn pings(&self, ip: &str) -> bool {
        self.exec(&["ping", "-c", "2", "-i", "0.2", "-W", "1", ip])
            .0
            == 0
    }

    /// The global addresses of `ifname` in the sandbox.
    fn addresses(&self, ifname: &str) -> String {
        self.exec(&["ip", "-brief", "address", "show", "dev", ifname])
            .1
    }
}

/// The test's pods, force-deleted when it ends, however it ends: no
/// kubelet confirms their deletion, and the lab's namespace cannot go
/// while they are there.
#[derive(Default)]
struct Pods(std::cell::RefCell<Vec<String>>);

impl Drop for Pods {
    fn drop(&mut self) {
        for name in self.0.borrow().iter() {
            cluster().kubectl(&[
                "--namespace",
                NAMESPACE,
                "delete",
                "pod",
                name,
                "--grace-period=0",
                "--force",
                "--ignore-not-found",
            ]);
        }
    }
}

/// Creates pod `name` on `node`, with `annotations`, and a sandbox for it
/// (the lab's prefix: removed with the lab).
fn pod(pods: &Pods, lab: &TestLab, name: &str, node: &str, annotations: Value) -> Sandbox {
    pods.0.borrow_mut().push(name.to_string());
    let uid = bound_pod(NAMESPACE, name, node, &annotations);
    let namespace = format!("{}-{name}", lab.name);
    netns::create(&namespace).unwrap();
    Sandbox {
        pod: name.into(),
        uid,
        namespace,
    }
}

/// A second sandbox for the same pod, as a restart makes.
fn again(lab: &TestLab, sandbox: &Sandbox, tag: &str) -> Sandbox {
    let namespace = format!("{}-{}-{tag}", lab.name, sandbox.pod);
    netns::create(&namespace).unwrap();
    Sandbox {
        pod: sandbox.pod.clone(),
        uid: sandbox.uid.clone(),
        namespace,
    }
}

fn port_field(port: &str, path: &str) -> String {
    cluster().kubectl_ok(&[
        "--namespace",
        NAMESPACE,
        "get",
        "port",
        port,
        "-o",
        &format!("jsonpath={{{path}}}"),
    ])
}

fn ok(run: &Run, what: &str) -> Value {
    assert!(run.ok, "{what} failed:\n{}{}", run.stdout, run.stderr);
    serde_json::from_str(&run.stdout).unwrap_or(Value::Null)
}

/// The address (without prefix) and MAC of an ADD's result.
fn attached(result: &Value) -> (String, String) {
    let address = result["ips"][0]["address"].as_str().unwrap();
    let address = address.split('/').next().unwrap().to_string();
    let mac = result["interfaces"][0]["mac"].as_str().unwrap().to_string();
    (address, mac)
}

fn records(lab: &TestLab, node: &str) -> Vec<String> {
    let dir = lab.lab.files().node_dir(node).join("cni");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn tenant_net() -> Value {
    json!({
        "cniVersion": "1.1.0", "name": "tenant-net", "type": "neutrino", "network": "blue",
        "capabilities": {"ips": true, "mac": true},
    })
}

/// A VM's attachment: the guest takes its address by DHCP.
fn vm_net() -> Value {
    json!({
        "cniVersion": "1.0.0", "name": "vm-net", "type": "neutrino", "network": "blue",
        "podAddresses": false,
    })
}

/// Creates the Port `name` on network blue, as a VM's is made: by the
/// user, bound to no node.
fn vm_port(name: &str) {
    let port = json!({
        "apiVersion": "neutrino.dev/v1alpha1", "kind": "Port",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"network": "blue"},
    });
    let run = cluster().kubectl_with(&["apply", "-f", "-"], &port.to_string());
    assert!(run.ok, "{}", run.stderr);
}

/// The lease a DHCP client in `sandbox` gets on net1.
fn lease(lab: &TestLab, sandbox: &Sandbox) -> neutrino::lab::state::Lease {
    let dir = lab.dir.join(format!("dhcp-{}", sandbox.pod));
    neutrino::lab::workload::dhcp_on(&sandbox.namespace, "net1", &dir).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn cnitool_drives_add_check_del_gc_and_status_against_real_agents() {
    let _one = one_lab_at_a_time().await;
    let lab = TestLab::new("cni");
    up_as_the_chart_runs_it(&lab, "quickstart", 2).await;
    let pods = Pods::default();
    let node1 = Runtime::new(&lab, "node-1").with(&[tenant_net()]);
    let node2 = Runtime::new(&lab, "node-2").with(&[tenant_net()]);
    let a = pod(&pods, &lab, "pod-a", "node-1", json!({}));
    let b = pod(&pods, &lab, "pod-b", "node-2", json!({}));

    // ADD: a Port for each pod, owned by it and bound to its node; the
    // result is the Port's.
    let result_a = ok(
        &node1.cnitool("add", "tenant-net", &a, "net1", None),
        "ADD pod-a",
    );
    let result_b = ok(
        &node2.cnitool("add", "tenant-net", &b, "net1", None),
        "ADD pod-b",
    );
    let (ip_a, mac_a) = attached(&result_a);
    let (ip_b, _) = attached(&result_b);
    assert_eq!(
        port_field("pod-a-net1", ".status.fixedIPs[0].ipAddress"),
        ip_a
    );
    assert_eq!(port_field("pod-a-net1", ".status.macAddress"), mac_a);
    assert_eq!(port_field("pod-a-net1", ".spec.nodeName"), "node-1");
    assert_eq!(
        port_field("pod-a-net1", ".metadata.ownerReferences[0].uid"),
        a.uid
    );
    assert_eq!(
        result_a["interfaces"][0]["sandbox"],
        a.path().to_string_lossy().as_ref()
    );
    assert_eq!(result_a["ips"][0]["gateway"], "10.10.0.1");
    assert_eq!(result_a["dns"]["nameservers"][0], "10.10.0.2");
    assert!(
        a.addresses("net1").contains(&format!("{ip_a}/24")),
        "{}",
        a.addresses("net1")
    );

    // Across the two nodes' VXLAN tunnel, and to a lab workload.
    assert!(a.pings(&ip_b), "pod-a cannot reach pod-b at {ip_b}");
    assert!(b.pings(&ip_a), "pod-b cannot reach pod-a at {ip_a}");
    let web_2 = port_field("web-2", ".status.fixedIPs[0].ipAddress");
    assert!(a.pings(&web_2), "pod-a cannot reach web-2 at {web_2}");

    // CHECK agrees, and names what it finds wrong.
    ok(
        &node1.cnitool("check", "tenant-net", &a, "net1", None),
        "CHECK pod-a",
    );
    a.exec(&["ip", "link", "set", "net1", "down"]);
    let check = node1.cnitool("check", "tenant-net", &a, "net1", None);
    assert!(
        !check.ok && check.stderr.contains("it is down"),
        "{}",
        check.stderr
    );
    a.exec(&["ip", "link", "set", "net1", "up"]);
    ok(
        &node1.cnitool("status", "tenant-net", &a, "net1", None),
        "STATUS",
    );

    // A repeated ADD leaves the same.
    let repeated = ok(
        &node1.cnitool("add", "tenant-net", &a, "net1", None),
        "ADD pod-a again",
    );
    assert_eq!(attached(&repeated), (ip_a.clone(), mac_a.clone()));

    // The pod's sandbox made again (DEL, then ADD from a new namespace):
    // the interface goes back to the node, and comes with the same address
    // and MAC.
    ok(
        &node1.cnitool("del", "tenant-net", &a, "net1", None),
        "DEL pod-a",
    );
    ok(
        &node1.cnitool("del", "tenant-net", &a, "net1", None),
        "DEL pod-a again",
    );
    assert!(
        a.exec(&["ip", "link", "show", "net1"]).0 != 0,
        "net1 is still in pod-a's sandbox"
    );
    let a2 = again(&lab, &a, "2");
    let restarted = ok(
        &node1.cnitool("add", "tenant-net", &a2, "net1", None),
        "ADD pod-a restarted",
    );
    assert_eq!(attached(&restarted), (ip_a.clone(), mac_a.clone()));
    assert!(a2.pings(&ip_b), "restarted pod-a cannot reach pod-b");

    // DEL with node-2's agent stopped succeeds; back, the agent reaps the
    // attachment once the pod is gone, and its Port goes with it.
    assert!(lab.lab.stop_agent("node-2"));
    ok(
        &node2.cnitool("del", "tenant-net", &b, "net1", None),
        "DEL pod-b, agent down",
    );
    netns::delete(&b.namespace).unwrap();
    lab.lab.restart_agent("node-2").unwrap();
    assert_eq!(
        records(&lab, "node-2").len(),
        1,
        "the DEL never reached the agent"
    );
    cluster().kubectl_ok(&[
        "--namespace",
        NAMESPACE,
        "delete",
        "pod",
        "pod-b",
        "--grace-period=0",
        "--force",
    ]);
    assert!(eventually("pod-b's attachment reaped", MINUTE, || {
        records(&lab, "node-2").is_empty()
    }));
    assert!(eventually("pod-b's Port deleted", MINUTE, || {
        !cluster()
            .kubectl(&["--namespace", NAMESPACE, "get", "port", "pod-b-net1"])
            .ok
    }));

    // STATUS tells when the agent is down; GC takes back every attachment
    // of the network the runtime does not list (cnitool lists none).
    assert!(lab.lab.stop_agent("node-1"));
    let down = node1.cnitool("status", "tenant-net", &a2, "net1", None);
    assert!(
        !down.ok
            && down
                .stderr
                .contains("neutrino's agent on this node is not running"),
        "{}",
        down.stderr
    );
    lab.lab.restart_agent("node-1").unwrap();
    assert!(eventually("node-1's agent serving again", MINUTE, || {
        node1.cnitool("status", "tenant-net", &a2, "net1", None).ok
    }));
    ok(&node1.cnitool("gc", "tenant-net", &a2, "net1", None), "GC");
    assert!(
        records(&lab, "node-1").is_empty(),
        "{:?}",
        records(&lab, "node-1")
    );
    assert!(
        a2.exec(&["ip", "link", "show", "net1"]).0 != 0,
        "GC left net1 in pod-a's sandbox"
    );
    nothing_was_forbidden(&lab);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_attachments_are_refused_with_the_field_and_the_conflict() {
    let _one = one_lab_at_a_time().await;
    let lab = TestLab::new("cni-bad");
    up_as_the_chart_runs_it(&lab, "quickstart", 2).await;
    let pods = Pods::default();
    let no_network =
        json!({"cniVersion": "1.1.0", "name": "nowhere", "type": "neutrino", "network": "absent"});
    let node1 = Runtime::new(&lab, "node-1").with(&[tenant_net(), no_network]);
    let c = pod(&pods, &lab, "pod-c", "node-1", json!({}));
    // cnitool prints the plugin's error on standard error.
    let failed = |run: &Run, wanted: &[&str]| {
        assert!(!run.ok, "succeeded: {}", run.stdout);
        for part in wanted {
            assert!(
                run.stderr.contains(part),
                "{part:?} missing from {}",
                run.stderr
            );
        }
    };
    // An address on none of the network's subnets.
    let off = json!({"ips": ["192.168.9.9/24"]});
    let run = node1.cnitool("add", "tenant-net", &c, "net1", Some(&off));
    failed(
        &run,
        &[
            "runtimeConfig.ips: 192.168.9.9 is on no subnet of network tenant-a/blue",
            "blue-v4 10.10.0.0/24",
        ],
    );
    // An address another Port holds: the controller's verdict, at once.
    let held = port_field("web-1", ".status.fixedIPs[0].ipAddress");
    let taken = json!({"ips": [format!("{held}/24")]});
    let run = node1.cnitool("add", "tenant-net", &c, "net2", Some(&taken));
    failed(
        &run,
        &[
            "Port tenant-a/pod-c-net2 cannot be allocated",
            &held,
            "web-1",
        ],
    );
    // A Network that does not exist.
    let run = node1.cnitool("add", "nowhere", &c, "net3", None);
    failed(
        &run,
        &["Port tenant-a/pod-c-net3 cannot be allocated", "absent"],
    );
    // A pod on another node.
    let node2 = Runtime::new(&lab, "node-2").with(&[tenant_net()]);
    let run = node2.cnitool("add", "tenant-net", &c, "net1", None);
    failed(
        &run,
        &["pod tenant-a/pod-c is on node node-1, this agent's node is node-2"],
    );
    // A pod's annotation naming a Port that does not exist.
    let d = pod(
        &pods,
        &lab,
        "pod-d",
        "node-1",
        json!({"neutrino.dev/ports": r#"{"net1": "missing"}"#}),
    );
    let run = node1.cnitool("add", "tenant-net", &d, "net1", None);
    failed(
        &run,
        &[
            "neutrino.dev/ports names Port tenant-a/missing",
            "it does not exist",
        ],
    );
    // Nothing already working was disturbed.
    let web_2 = port_field("web-2", ".status.fixedIPs[0].ipAddress");
    assert!(lab.pings("tenant-a/web-1", &web_2));
}

/// A KubeVirt VM's attachment: the pod names the VM's own Port, gets an
/// interface without an address, and the guest asks neutrino's dnsmasq.
/// The VM started again on another node keeps its address and MAC.
#[tokio::test(flavor = "multi_thread")]
async fn a_vm_keeps_its_port_from_pod_to_pod_and_takes_its_address_by_dhcp() {
    let _one = one_lab_at_a_time().await;
    let lab = TestLab::new("cni-vm");
    up_as_the_chart_runs_it(&lab, "quickstart", 2).await;
    let pods = Pods::default();
    vm_port("vm-web");
    let vm_net = vm_net();
    let annotation = json!({"neutrino.dev/ports": r#"{"vm-net": "vm-web"}"#});
    let node1 = Runtime::new(&lab, "node-1").with(std::slice::from_ref(&vm_net));
    let node2 = Runtime::new(&lab, "node-2").with(&[vm_net]);
    let launcher = pod(
        &pods,
        &lab,
        "virt-launcher-web-1",
        "node-1",
        annotation.clone(),
    );
    let result = ok(
        &node1.cnitool("add", "vm-net", &launcher, "net1", None),
        "ADD the VM's pod",
    );
    assert!(result.get("ips").is_none(), "{result}");
    assert_eq!(port_field("vm-web", ".spec.nodeName"), "node-1");
    let mac = port_field("vm-web", ".status.macAddress");
    let ip = port_field("vm-web", ".status.fixedIPs[0].ipAddress");
    assert_eq!(result["interfaces"][0]["mac"], mac.as_str());
    assert!(!launcher.addresses("net1").contains(&ip));
    // The guest's DHCP client gets every option.
    let lease = |sandbox: &Sandbox| lease(&lab, sandbox);
    let first = lease(&launcher);
    assert_eq!(first.ip, ip);
    assert_eq!((&*first.router, &*first.dns), ("10.10.0.1", "10.10.0.2"));
    assert_eq!(first.mtu, port_field("vm-web", ".status.mtu"));
    let web_2 = port_field("web-2", ".status.fixedIPs[0].ipAddress");
    assert!(launcher.pings(&web_2));
    // Stopped here, started on node-2 in a pod of another name: the same
    // Port, address and MAC.
    ok(
        &node1.cnitool("del", "vm-net", &launcher, "net1", None),
        "DEL the VM's pod",
    );
    let moved = pod(&pods, &lab, "virt-launcher-web-2", "node-2", annotation);
    let result = ok(
        &node2.cnitool("add", "vm-net", &moved, "net1", None),
        "ADD the VM's new pod",
    );
    assert_eq!(result["interfaces"][0]["mac"], mac.as_str());
    assert_eq!(port_field("vm-web", ".spec.nodeName"), "node-2");
    assert_eq!(lease(&moved).ip, ip);
    let web_1 = port_field("web-1", ".status.fixedIPs[0].ipAddress");
    assert!(moved.pings(&web_1));
    // The Port is the VM's, not the pods': it outlives them.
    cluster().kubectl_ok(&[
        "--namespace",
        NAMESPACE,
        "delete",
        "pod",
        "virt-launcher-web-1",
        "--grace-period=0",
        "--force",
    ]);
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(port_field("vm-web", ".status.fixedIPs[0].ipAddress"), ip);
    nothing_was_forbidden(&lab);
}

/// The FDB entries of `node` for `mac`: one per line.
fn fdb_of(lab: &TestLab, node: &str, mac: &str) -> String {
    let run = Command::new("bridge")
        .args(["-n", &lab.node(node), "fdb", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&run.stdout)
        .lines()
        .filter(|l| l.starts_with(mac))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A VM's live migration as KubeVirt runs one: the target pod on node-2
/// names the Port its running source pod on node-1 holds. Until the
/// source completes, the Port stays on node-1 and every FDB points there;
/// then the target takes over without its interface being touched.
#[tokio::test(flavor = "multi_thread")]
async fn a_live_migration_moves_the_fdb_when_the_source_pod_ends() {
    let _one = one_lab_at_a_time().await;
    let lab = TestLab::new("cni-migrate");
    up_as_the_chart_runs_it(&lab, "quickstart", 2).await;
    let pods = Pods::default();
    vm_port("vm-db");
    let vm_net = vm_net();
    let annotation = json!({"neutrino.dev/ports": r#"{"vm-net": "vm-db", "tenant-net": "vm-db"}"#});
    let node1 = Runtime::new(&lab, "node-1").with(&[vm_net.clone(), tenant_net()]);
    let node2 = Runtime::new(&lab, "node-2").with(&[vm_net, tenant_net()]);
    let lease = |sandbox: &Sandbox| lease(&lab, sandbox);
    let source = pod(
        &pods,
        &lab,
        "virt-launcher-db-a",
        "node-1",
        annotation.clone(),
    );
    ok(
        &node1.cnitool("add", "vm-net", &source, "net1", None),
        "ADD the source pod",
    );
    let mac = port_field("vm-db", ".status.macAddress");
    let ip = port_field("vm-db", ".status.fixedIPs[0].ipAddress");
    assert_eq!(lease(&source).ip, ip);
    let (web_1, web_2) = (
        port_field("web-1", ".status.fixedIPs[0].ipAddress"),
        port_field("web-2", ".status.fixedIPs[0].ipAddress"),
    );
    assert!(source.pings(&web_2));

    // A second pod that would take the Port's addresses is not a migration.
    let impostor = pod(&pods, &lab, "impostor", "node-2", annotation.clone());
    let run = node2.cnitool("add", "tenant-net", &impostor, "net1", None);
    assert!(!run.ok, "{}", run.stdout);
    for part in [
        "Port tenant-a/vm-db",
        "pod tenant-a/virt-launcher-db-a on node node-1 holds it",
        "\"podAddresses\": false",
    ] {
        assert!(run.stderr.contains(part), "{part:?} in {}", run.stderr);
    }
    assert!(records(&lab, "node-2").is_empty());

    // The target stands by: the Port's veth is in its pod, and the Port,
    // its FDB and its traffic stay with the source.
    let target = pod(
        &pods,
        &lab,
        "virt-launcher-db-b",
        "node-2",
        annotation.clone(),
    );
    let result = ok(
        &node2.cnitool("add", "vm-net", &target, "net1", None),
        "ADD the target pod",
    );
    assert_eq!(result["interfaces"][0]["mac"], mac.as_str());
    ok(
        &node2.cnitool("check", "vm-net", &target, "net1", None),
        "CHECK the standby",
    );
    let index = |sandbox: &Sandbox| sandbox.exec(&["cat", "/sys/class/net/net1/ifindex"]).1;
    let standby_index = index(&target);
    assert_eq!(port_field("vm-db", ".spec.nodeName"), "node-1");
    assert!(
        fdb_of(&lab, "node-2", &mac).contains("dst 198.18.0.1"),
        "node-2 sends the VM's frames to node-1:\n{}",
        fdb_of(&lab, "node-2", &mac)
    );
    assert!(source.pings(&web_2));
    assert!(source.pings(&web_1));

    // The VM runs on the target now; the source pod completes.
    cluster().kubectl_ok(&[
        "--namespace",
        NAMESPACE,
        "patch",
        "pod",
        "virt-launcher-db-a",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status": {"phase": "Succeeded"}}"#,
    ]);
    assert!(eventually("the Port moves to node-2", MINUTE, || {
        port_field("vm-db", ".spec.nodeName") == "node-2"
    }));
    assert!(eventually(
        "node-1 sends the VM's frames to node-2",
        MINUTE,
        || { fdb_of(&lab, "node-1", &mac).contains("dst 198.18.0.2") }
    ));
    assert!(eventually(
        "node-2 has no tunnel entry for the VM",
        MINUTE,
        || { !fdb_of(&lab, "node-2", &mac).contains("dst ") }
    ));
    assert_eq!(
        index(&target),
        standby_index,
        "the VM's interface is the same"
    );
    assert_eq!(lease(&target).ip, ip);
    assert!(eventually(
        "the VM reaches node-1 from node-2",
        MINUTE,
        || target.pings(&web_1)
    ));
    ok(
        &node2.cnitool("check", "vm-net", &target, "net1", None),
        "CHECK the migrated VM",
    );
    ok(
        &node1.cnitool("del", "vm-net", &source, "net1", None),
        "DEL the source pod",
    );
    assert_eq!(port_field("vm-db", ".spec.nodeName"), "node-2");
    assert!(
        port_field("vm-db", ".metadata.annotations.neutrino\\.dev/held-by")
            .starts_with("virt-launcher-db-b/")
    );

    // A migration that is called off: its standby goes, the VM stays.
    let aborted = pod(&pods, &lab, "virt-launcher-db-c", "node-1", annotation);
    ok(
        &node1.cnitool("add", "vm-net", &aborted, "net1", None),
        "ADD a target that is called off",
    );
    ok(
        &node1.cnitool("del", "vm-net", &aborted, "net1", None),
        "DEL the target that is called off",
    );
    assert!(records(&lab, "node-1").is_empty());
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(port_field("vm-db", ".spec.nodeName"), "node-2");
    assert!(target.pings(&web_1));
    assert_eq!(port_field("vm-db", ".status.fixedIPs[0].ipAddress"), ip);
    nothing_was_forbidden(&lab);
}

/// Multus, as kubelet's runtime runs it: it reads the pod and its
/// NetworkAttachmentDefinition from the API server and delegates to
/// neutrino; the cluster network is Debian's loopback plugin.
#[tokio::test(flavor = "multi_thread")]
async fn multus_attaches_pods_through_a_network_attachment_definition() {
    let _one = one_lab_at_a_time().await;
    let lab = TestLab::new("multus");
    up_as_the_chart_runs_it(&lab, "quickstart", 2).await;
    let pods = Pods::default();
    let config = json!({
        "cniVersion": "1.0.0", "name": "blue", "type": "neutrino", "network": "blue",
        "capabilities": {"ips": true, "mac": true},
    });
    network_attachment(NAMESPACE, "blue", &config);
    let runtimes: Vec<Runtime> = ["node-1", "node-2"]
        .iter()
        .map(|node| {
            let runtime = Runtime::new(&lab, node);
            let cache = lab.dir.join(format!("multus-{node}"));
            let multus = json!({
                "cniVersion": "1.0.0", "name": "multus", "type": "multus",
                "kubeconfig": cluster().kubeconfig,
                "binDir": runtime.bin, "cniDir": cache,
                "logFile": cache.join("multus.log"), "logLevel": "verbose",
                "delegates": [{"cniVersion": "1.0.0", "name": "cluster", "type": "loopback"}],
            });
            runtime.with(&[multus])
        })
        .collect();
    let fixed = "10.10.0.77";
    let a = pod(
        &pods,
        &lab,
        "multus-a",
        "node-1",
        json!({"k8s.v1.cni.cncf.io/networks": json!([{"name": "blue", "ips": [format!("{fixed}/24")]}]).to_string()}),
    );
    let b = pod(
        &pods,
        &lab,
        "multus-b",
        "node-2",
        json!({"k8s.v1.cni.cncf.io/networks": "blue"}),
    );
    // Both Ports are made when the pods are bound, and allocated before
    // any ADD: multus-a's with the address its selection asks for.
    assert!(eventually(
        "the pods' Ports allocated before their sandboxes",
        MINUTE,
        || {
            port_field_in(NAMESPACE, "multus-a-net1", ".status.fixedIPs[0].ipAddress")
                .is_some_and(|ip| ip == fixed)
                && port_field_in(NAMESPACE, "multus-b-net1", ".status.fixedIPs[0].ipAddress")
                    .is_some_and(|ip| !ip.is_empty())
        }
    ));
    let result_a = ok(
        &runtimes[0].cnitool("add", "multus", &a, "eth0", None),
        "Multus ADD a",
    );
    ok(
        &runtimes[1].cnitool("add", "multus", &b, "eth0", None),
        "Multus ADD b",
    );
    // Multus named the interface net1 and asked for the fixed address.
    assert!(
        a.addresses("net1").contains(&format!("{fixed}/24")),
        "{}\n{result_a}",
        a.addresses("net1")
    );
    assert_eq!(
        port_field("multus-a-net1", ".spec.fixedIPs[0].ipAddress"),
        fixed
    );
    let ip_b = port_field("multus-b-net1", ".status.fixedIPs[0].ipAddress");
    assert!(a.pings(&ip_b), "multus-a cannot reach multus-b at {ip_b}");
    ok(
        &runtimes[0].cnitool("del", "multus", &a, "eth0", None),
        "Multus DEL a",
    );
    assert!(a.exec(&["ip", "link", "show", "net1"]).0 != 0);

    // A pod of another tenant selecting tenant-a's definition gets a Port
    // in its own namespace, on a network of that name there (none): no
    // address, and nothing in tenant-a.
    cluster().kubectl_ok(&["create", "namespace", "tenant-b"]);
    bound_pod(
        "tenant-b",
        "intruder",
        "node-1",
        &json!({"k8s.v1.cni.cncf.io/networks": "tenant-a/blue"}),
    );
    assert!(eventually(
        "the intruder's Port made in its own namespace",
        MINUTE,
        || { port_field_in("tenant-b", "intruder-net1", ".spec.network").is_some() }
    ));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        port_field_in("tenant-b", "intruder-net1", ".status.fixedIPs[*].ipAddress"),
        Some(String::new()),
        "a Port on a network its namespace does not have holds no address"
    );
    assert_eq!(
        port_field_in(NAMESPACE, "intruder-net1", ".metadata.name"),
        None
    );
    cluster().kubectl_ok(&["delete", "namespace", "tenant-b", "--wait=false"]);
    nothing_was_forbidden(&lab);
}

/// A field of Port `port` in `namespace`; `None` while there is no such Port.
fn port_field_in(namespace: &str, port: &str, path: &str) -> Option<String> {
    let run = cluster().kubectl(&[
        "--namespace",
        namespace,
        "get",
        "port",
        port,
        "-o",
        &format!("jsonpath={{{path}}}"),
    ]);
    run.ok.then_some(run.stdout)
}
