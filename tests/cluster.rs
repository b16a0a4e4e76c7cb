//! neutrino on a real Kubernetes control plane (etcd, kube-apiserver,
//! kube-controller-manager, built by scripts/install-deps), driven with the
//! real kubectl and helm, as a user meets it.

mod support;

use support::TestLab;
use support::chart::{
    RELEASE, RELEASE_NAMESPACE, cluster, installed, kubectl_waits_for_every_object, no_lab_running,
    nothing_was_forbidden, one_lab_at_a_time, up_as_the_chart_runs_it,
};
use support::control_plane::{ControlPlane, repository};
use support::examples::{self, example};

#[test]
fn helm_installs_the_chart_and_the_server_accepts_every_object() {
    let (cluster, output) = installed();
    assert!(output.contains("STATUS: deployed"), "{output}");
    // Every CRD the code generates is served, schema and CEL rules accepted.
    for (_, crd) in neutrino::api::crds() {
        let name = crd.metadata.name.unwrap();
        cluster.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=30s",
            &format!("crd/{name}"),
        ]);
    }
    // Every object the templates render exists on the server.
    let manifest = cluster
        .helm(&["get", "manifest", RELEASE, "--namespace", RELEASE_NAMESPACE])
        .stdout;
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(&manifest).unwrap();
    let mut checked = 0;
    for document in documents.iter().filter(|d| !d.is_null()) {
        let kind = document["kind"].as_str().unwrap();
        let name = document["metadata"]["name"].as_str().unwrap();
        let namespace = document["metadata"]["namespace"].as_str();
        let mut args = vec!["get", kind, name, "-o", "name"];
        if let Some(namespace) = namespace {
            args.extend(["--namespace", namespace]);
        }
        cluster.kubectl_ok(&args);
        checked += 1;
    }
    assert!(checked >= 10, "the chart rendered only {checked} objects");
}

#[test]
fn kubectl_explain_shows_the_field_descriptions() {
    let cluster = cluster();
    // The server publishes a new CRD's OpenAPI a moment after it is established.
    for _ in 0..100 {
        if cluster.kubectl(&["explain", "networks"]).ok {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let explained = cluster.kubectl_ok(&["explain", "networks.spec.segmentationID"]);
    assert!(explained.contains("VNI"), "{explained}");
    let explained = cluster.kubectl_ok(&["explain", "ports.spec.fixedIPs"]);
    assert!(explained.contains("ipAddress"), "{explained}");
    assert!(explained.contains("DESCRIPTION"), "{explained}");
}

#[test]
fn kubectl_get_shows_the_printer_columns() {
    let cluster = cluster();
    // three-tier's Ports bind the labs' nodes and its external network
    // claims their physical network: gone before a lab starts.
    let _no_lab = no_lab_running();
    // Objects of every kind, in a namespace of this test's own.
    let namespace = "printer-columns";
    cluster.kubectl_ok(&["create", "namespace", namespace]);
    for path in example_files("three-tier") {
        for mut doc in documents(&std::fs::read_to_string(path).unwrap()) {
            doc["metadata"]["namespace"] = namespace.into();
            let run = apply(cluster, &doc);
            assert!(run.ok, "{}", run.stderr);
        }
    }
    for (_, crd) in neutrino::api::crds() {
        let plural = &crd.spec.names.plural;
        if crd.spec.scope != "Namespaced" || plural.ends_with("claims") {
            continue;
        }
        let table = cluster.kubectl_ok(&["get", plural, "--namespace", namespace, "-o", "wide"]);
        let header = table.lines().next().unwrap_or_default();
        for column in crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
        {
            assert!(
                header.contains(&column.name.to_uppercase()),
                "{plural}: column {} missing from {header:?}",
                column.name
            );
        }
    }
    // No controller put finalizers on them: the namespace goes at once.
    cluster.kubectl_ok(&["delete", "namespace", namespace, "--timeout=60s"]);
}

/// The manifest files of an example.
fn example_files(example: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(repository().join("examples").join(example))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn directives(text: &str, key: &str) -> Vec<String> {
    let prefix = format!("# {key}:");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().to_string())
        .collect()
}

/// The documents of a manifest file.
fn documents(text: &str) -> Vec<serde_json::Value> {
    serde_saphyr::from_multiple::<serde_json::Value>(text)
        .unwrap()
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn apply(cluster: &ControlPlane, object: &serde_json::Value) -> support::control_plane::Run {
    cluster.kubectl_with(
        &["apply", "-f", "-"],
        &serde_json::to_string(object).unwrap(),
    )
}

fn delete(cluster: &ControlPlane, object: &serde_json::Value) {
    cluster.kubectl_with(
        &["delete", "--ignore-not-found", "--wait=false", "-f", "-"],
        &serde_json::to_string(object).unwrap(),
    );
}

/// The bad manifests whose rules CEL holds are refused by the real server
/// too, with the same message and the field named: what the offline
/// evaluator says is what `kubectl apply` says.
#[test]
fn the_server_refuses_what_the_cel_rules_refuse_naming_the_field() {
    let cluster = cluster();
    // The objects an update is tried on claim segments and bind nodes.
    let _no_lab = no_lab_running();
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut files: Vec<_> = std::fs::read_dir(repository().join("tests/invalid"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for (index, path) in files.iter().enumerate() {
        let text = std::fs::read_to_string(path).unwrap();
        let cel = directives(&text, "cel");
        let cel_update = directives(&text, "cel-update");
        if cel.is_empty() && cel_update.is_empty() {
            continue;
        }
        // Each file in a namespace of its own: no file sees another's objects.
        let namespace = format!("invalid-{index}");
        let mut docs = documents(&text);
        for doc in &mut docs {
            doc["metadata"]["namespace"] = namespace.clone().into();
        }
        cluster.kubectl_ok(&["create", "namespace", &namespace]);
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(message) = cel.first() {
            let expect = directives(&text, "expect");
            let line = expect
                .first()
                .expect("a cel file says which object with expect");
            let parts: Vec<&str> = line.split_whitespace().collect();
            let (kind, name, field) = (parts[0], parts[1].split('/').nth(1).unwrap(), parts[2]);
            let object = docs
                .iter()
                .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
                .expect("the expected object is in the file");
            let run = apply(cluster, object);
            check_refusal(&mut failures, &file, &run, message, Some(field));
        }
        if let Some(message) = cel_update.first() {
            let run = apply(cluster, &docs[0]);
            if run.ok {
                let run = apply(cluster, &docs[1]);
                check_refusal(&mut failures, &file, &run, message, None);
            } else {
                failures.push(format!(
                    "{file}: the first object was refused: {}",
                    run.stderr
                ));
            }
            delete(cluster, &docs[0]);
        }
        cluster.kubectl(&["delete", "namespace", &namespace, "--wait=false"]);
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} files have CEL rules");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn check_refusal(
    failures: &mut Vec<String>,
    file: &str,
    run: &support::control_plane::Run,
    message: &str,
    field: Option<&str>,
) {
    if run.ok {
        failures.push(format!(
            "{file}: the server accepted it: {}",
            run.stdout.trim()
        ));
    } else if !run.stderr.contains(message) {
        failures.push(format!(
            "{file}: expected {message:?}, the server said {}",
            run.stderr.trim()
        ));
    } else if let Some(field) = field
        && !named_fields(&run.stderr)
            .iter()
            .any(|named| field.starts_with(named.as_str()) || named.starts_with(field))
    {
        failures.push(format!(
            "{file}: the server did not name {field}: {}",
            run.stderr.trim()
        ));
    }
}

/// The field paths an API server error names (`spec.rules[0].protocol: …`).
/// A rule over a whole list names the list, where the core names the item.
fn named_fields(error: &str) -> Vec<String> {
    error
        .match_indices("spec")
        .filter_map(|(at, _)| {
            let path: String = error[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || "._[]".contains(*c))
                .collect();
            error[at + path.len()..].starts_with(':').then_some(path)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn quickstart_through_the_cluster() {
    let _one = one_lab_at_a_time().await;
    let lab = TestLab::new("c-qs");
    let summary = up_as_the_chart_runs_it(&lab, "quickstart", 2).await;
    kubectl_waits_for_every_object(cluster(), "quickstart");
    examples::quickstart_ports_meet(&lab, &summary);
    // Each workload's lease is the address the Port's status shows.
    for port in ["web-1", "web-2"] {
        let allocated = cluster().kubectl_ok(&[
            "--namespace",
            "tenant-a",
            "get",
            "port",
            port,
            "-o",
            "jsonpath={.status.fixedIPs[0].ipAddress}",
        ]);
        let lease = summary.workloads[&format!("tenant-a/{port}")]
            .lease
            .clone()
            .unwrap();
        assert_eq!(lease.ip, allocated, "{port}");
        // Its status says which DHCP server and metadata service answer
        // it, once its node has realised it.
        let node = if port == "web-1" { "node-1" } else { "node-2" };
        let served = [
            ("dhcp", "Subnet", "blue-v4", node),
            ("metadata", "Subnet", "blue-v4", node),
        ];
        for (service, kind, name, node) in served {
            cluster().kubectl_ok(&[
                "--namespace",
                "tenant-a",
                "wait",
                &format!("port/{port}"),
                "--timeout=30s",
                &format!("--for=jsonpath={{.status.services.{service}[0].node}}={node}"),
            ]);
            let endpoint = cluster().kubectl_ok(&[
                "--namespace",
                "tenant-a",
                "get",
                "port",
                port,
                "-o",
                &format!("jsonpath={{.status.services.{service}[0].kind}}/{{.status.services.{service}[0].name}}"),
            ]);
            assert_eq!(endpoint, format!("{kind}/{name}"), "{port} {service}");
        }
    }
    nothing_was_forbidden(&lab);

    // They ran as the chart's service accounts; an agent's token is bound
    // to its node.
    let whoami = |kubeconfig: std::path::PathBuf| {
        cluster().kubectl_ok(&[
            "auth",
            "whoami",
            "--kubeconfig",
            &kubeconfig.to_string_lossy(),
            "-o",
            "yaml",
        ])
    };
    let controller = whoami(lab.lab.files().controller_kubeconfig());
    assert!(
        controller.contains("system:serviceaccount:neutrino-system:neutrino-controller"),
        "{controller}"
    );
    let agent = whoami(lab.lab.files().agent_kubeconfig("node-2"));
    assert!(
        agent.contains("system:serviceaccount:neutrino-system:neutrino-agent"),
        "{agent}"
    );
    assert!(
        agent.contains("authentication.kubernetes.io/node-name"),
        "{agent}"
    );
    assert!(agent.contains("- node-2"), "{agent}");
}

#[tokio::test(flavor = "multi_thread")]
async fn overlapping_tenants_through_the_cluster() {
    let _one = one_lab_at_a_time().await;
    let lab = TestLab::new("c-ot");
    up_as_the_chart_runs_it(&lab, "overlapping-tenants", 2).await;
    kubectl_waits_for_every_object(cluster(), "overlapping-tenants");
    examples::overlapping_tenants_stay_apart(&lab);
    nothing_was_forbidden(&lab);
}

#[tokio::test(flavor = "multi_thread")]
async fn three_tier_through_the_cluster() {
    let _one = one_lab_at_a_time().await;
    let lab = TestLab::new("c-3t");
    let summary = up_as_the_chart_runs_it(&lab, "three-tier", 3).await;
    kubectl_waits_for_every_object(cluster(), "three-tier");
    examples::three_tier_routes_filters_and_translates(&lab, &summary).await;
    nothing_was_forbidden(&lab);
}

#[tokio::test(flavor = "multi_thread")]
async fn dual_stack_through_the_cluster() {
    let _one = one_lab_at_a_time().await;
    let lab = TestLab::new("c-ds");
    let summary = up_as_the_chart_runs_it(&lab, "dual-stack", 2).await;
    kubectl_waits_for_every_object(cluster(), "dual-stack");
    let allocated = |port: &str| -> Vec<String> {
        let name = port.split_once('/').unwrap().1;
        let path = "jsonpath={.status.fixedIPs[*].ipAddress}";
        let ips = cluster().kubectl_ok(&["--namespace", "dual", "get", "port", name, "-o", path]);
        ips.split_whitespace().map(String::from).collect()
    };
    examples::dual_stack_routes_both_families(&lab, &summary, &allocated);
    nothing_was_forbidden(&lab);
}

/// Every neutrino object left on the server, claims included.
fn objects_left(cluster: &ControlPlane) -> String {
    cluster.kubectl_ok(&[
        "get",
        "networks,subnets,ports,routers,floatingips,securitygroups,ipclaims,segmentclaims",
        "--all-namespaces",
        "-o",
        "name",
    ])
}

/// Waits until the server holds no neutrino object and no node's kernel
/// holds anything of them.
async fn nothing_is_left(lab: &TestLab, nodes: &[&str]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let api = objects_left(cluster());
        let kernel = support::kernel_leftovers(lab, nodes).await;
        if api.trim().is_empty() && kernel.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "left after 60 s:\n{api}{}",
            kernel.join("\n")
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// provider-vlan's dataplane needs 802.1Q, which this kernel may lack (the
/// lab tests run it under Debian's kernel); its objects are still the API
/// server's and the controller's to accept and allocate, with the
/// controller and agents of a running lab.
#[tokio::test(flavor = "multi_thread")]
async fn provider_vlan_is_accepted_and_allocated_through_the_cluster() {
    let _one = one_lab_at_a_time().await;
    let lab = TestLab::new("c-vlan");
    up_as_the_chart_runs_it(&lab, "quickstart", 2).await;
    let folder = example("provider-vlan");
    let folder = folder.to_string_lossy();
    cluster().kubectl_ok(&["create", "namespace", "ops"]);
    cluster().kubectl_ok(&["apply", "--filename", &folder]);
    kubectl_waits_for_every_object(cluster(), "provider-vlan");
    let vlan = cluster().kubectl_ok(&[
        "get",
        "networks",
        "--all-namespaces",
        "-o",
        "jsonpath={range .items[?(@.spec.type==\"vlan\")]}{.status.segmentationID}{end}",
    ]);
    assert!(!vlan.is_empty(), "no VLAN id allocated");
    cluster().kubectl_ok(&["delete", "--filename", &folder, "--timeout=60s"]);
    cluster().kubectl_ok(&["delete", "namespace", "ops", "--timeout=60s"]);
    nothing_was_forbidden(&lab);
}

/// The examples that run on any kernel (provider-vlan needs 802.1Q), with
/// their node counts.
const EXAMPLES: [(&str, usize); 4] = [
    ("quickstart", 2),
    ("overlapping-tenants", 2),
    ("three-tier", 3),
    ("dual-stack", 2),
];

/// The namespaces an example's objects live in.
fn namespaces_of(name: &str) -> Vec<String> {
    let mut namespaces: Vec<String> = example_files(name)
        .iter()
        .flat_map(|path| documents(&std::fs::read_to_string(path).unwrap()))
        .filter_map(|doc| doc["metadata"]["namespace"].as_str().map(String::from))
        .collect();
    namespaces.sort();
    namespaces.dedup();
    namespaces
}

fn node_names(count: usize) -> Vec<String> {
    (1..=count).map(|i| format!("node-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_delete_of_every_example_leaves_nothing_behind() {
    let _one = one_lab_at_a_time().await;
    for (name, nodes) in EXAMPLES {
        let lab = TestLab::new("c-del");
        up_as_the_chart_runs_it(&lab, name, nodes).await;
        let folder = example(name);
        cluster().kubectl_ok(&[
            "delete",
            "--filename",
            &folder.to_string_lossy(),
            "--timeout=60s",
        ]);
        let nodes = node_names(nodes);
        nothing_is_left(&lab, &nodes.iter().map(String::as_str).collect::<Vec<_>>()).await;
        nothing_was_forbidden(&lab);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_every_examples_namespaces_leaves_nothing_behind() {
    let _one = one_lab_at_a_time().await;
    for (name, nodes) in EXAMPLES {
        let lab = TestLab::new("c-ns");
        up_as_the_chart_runs_it(&lab, name, nodes).await;
        // three-tier's external network lives in a namespace of its own: its
        // finalizer holds it until the router in the other one lets go.
        let mut args = vec!["delete".to_string(), "namespace".to_string()];
        args.extend(namespaces_of(name));
        args.push("--timeout=90s".into());
        cluster().kubectl_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let nodes = node_names(nodes);
        nothing_is_left(&lab, &nodes.iter().map(String::as_str).collect::<Vec<_>>()).await;
        nothing_was_forbidden(&lab);
    }
}

/// A tenant: a service account of its own namespace, bound there to
/// Kubernetes' own `edit` role (which the chart's roles aggregate into);
/// returns a kubeconfig with its token.
fn tenant(cluster: &ControlPlane, namespace: &str) -> String {
    cluster.kubectl_ok(&["create", "namespace", namespace]);
    cluster.kubectl_ok(&[
        "--namespace",
        namespace,
        "create",
        "serviceaccount",
        "tenant",
    ]);
    cluster.kubectl_ok(&[
        "--namespace",
        namespace,
        "create",
        "rolebinding",
        "tenant-edit",
        "--clusterrole=edit",
        &format!("--serviceaccount={namespace}:tenant"),
    ]);
    let token = cluster.kubectl_ok(&["--namespace", namespace, "create", "token", "tenant"]);
    cluster
        .kubeconfig_for_token(&format!("tenant-{namespace}"), token.trim())
        .to_string_lossy()
        .into_owned()
}

fn network(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: neutrino.dev/v1alpha1\nkind: Network\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec: {spec}\n"
    )
}

#[test]
fn tenants_manage_their_networks_but_not_provider_attributes() {
    let cluster = cluster();
    let namespace = "tenancy-a";
    let kubeconfig = tenant(cluster, namespace);
    let apply =
        |yaml: &str| cluster.kubectl_with(&["--kubeconfig", &kubeconfig, "apply", "-f", "-"], yaml);
    // An overlay network of its own: the tenant's to make and change.
    let run = apply(&network(namespace, "blue", "{type: vxlan}"));
    assert!(run.ok, "{}", run.stderr);
    let run = apply(&network(namespace, "blue", "{type: vxlan, mtu: 1400}"));
    assert!(run.ok, "{}", run.stderr);

    // Provider attributes are refused, saying why.
    for (name, spec) in [
        ("by-vni", "{type: vxlan, segmentationID: 4242}"),
        (
            "on-a-vlan",
            "{type: vlan, physicalNetwork: physnet1, segmentationID: 150}",
        ),
        ("flat", "{type: flat, physicalNetwork: extnet}"),
        ("public", "{type: vxlan, external: true}"),
    ] {
        let run = apply(&network(namespace, name, spec));
        assert!(!run.ok, "{name} was accepted");
        assert!(
            run.stderr.contains("are provider attributes")
                && run
                    .stderr
                    .contains("system:serviceaccount:tenancy-a:tenant"),
            "{name}: {}",
            run.stderr
        );
    }
    let run = apply(&network(
        namespace,
        "blue",
        "{type: vxlan, mtu: 1400, external: true}",
    ));
    assert!(!run.ok, "blue became external: {}", run.stdout);

    // Other namespaces are not the tenant's at all.
    let run = cluster.kubectl(&[
        "--kubeconfig",
        &kubeconfig,
        "get",
        "networks",
        "--namespace",
        "default",
    ]);
    assert!(
        !run.ok && run.stderr.contains("forbidden"),
        "{}",
        run.stderr
    );

    // Granted the provider role in its namespace, it may.
    cluster.kubectl_ok(&[
        "--namespace",
        namespace,
        "create",
        "rolebinding",
        "tenant-provider",
        "--clusterrole=neutrino-network-provider",
        "--serviceaccount=tenancy-a:tenant",
    ]);
    let run = apply(&network(
        namespace,
        "by-vni",
        "{type: vxlan, segmentationID: 4242}",
    ));
    assert!(run.ok, "{}", run.stderr);
    cluster.kubectl_ok(&["delete", "namespace", namespace, "--wait=false"]);
}

#[test]
fn tenants_neither_bind_ports_nor_name_another_namespaces_groups() {
    let cluster = cluster();
    let namespace = "tenancy-b";
    let kubeconfig = tenant(cluster, namespace);
    let apply =
        |yaml: &str| cluster.kubectl_with(&["--kubeconfig", &kubeconfig, "apply", "-f", "-"], yaml);
    let port = |spec: &str| {
        format!(
            "apiVersion: neutrino.dev/v1alpha1\nkind: Port\nmetadata: {{name: web, namespace: {namespace}}}\nspec: {spec}\n"
        )
    };
    let run = apply(&port("{network: blue}"));
    assert!(run.ok, "{}", run.stderr);

    // Binding the port to a node is refused, saying what it takes.
    let run = apply(&port("{network: blue, nodeName: node-1}"));
    assert!(
        !run.ok
            && run
                .stderr
                .contains("spec.nodeName binds the port to a node")
            && run.stderr.contains("set on ports/binding"),
        "a tenant bound its Port: {}",
        run.stderr
    );
    // Another namespace's security group: refused by the schema.
    let run = apply(&port(r#"{network: blue, securityGroups: ["beta/admin"]}"#));
    assert!(
        !run.ok && run.stderr.contains("securityGroups"),
        "a Port named another namespace's group: {}",
        run.stdout
    );

    // Granted the binding role in its namespace, it may bind.
    cluster.kubectl_ok(&[
        "--namespace",
        namespace,
        "create",
        "rolebinding",
        "tenant-binding",
        "--clusterrole=neutrino-port-binding",
        "--serviceaccount=tenancy-b:tenant",
    ]);
    let run = apply(&port("{network: blue, nodeName: node-1}"));
    assert!(run.ok, "{}", run.stderr);
    cluster.kubectl_ok(&["delete", "namespace", namespace, "--wait=false"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_writes_only_its_own_record_and_only_node_addresses_are_trusted() {
    let _one = one_lab_at_a_time().await;
    let lab = TestLab::new("c-own");
    up_as_the_chart_runs_it(&lab, "quickstart", 2).await;
    let cluster = cluster();
    let node1 = lab.lab.files().agent_kubeconfig("node-1");
    let as_node1 = |args: &[&str]| {
        let mut all = vec!["--kubeconfig", node1.to_str().unwrap()];
        all.extend(args);
        cluster.kubectl(&all)
    };
    let tunnel = |ip: &str| format!("{{\"spec\":{{\"tunnelIP\":\"{ip}\"}}}}");

    // The lab's agents choose their endpoint by interface, and say so.
    let table = cluster.kubectl_ok(&["get", "nodeagents"]);
    assert!(table.contains("CHOSEN BY"), "{table}");
    let node1_row = table.lines().find(|l| l.starts_with("node-1 ")).unwrap();
    assert!(
        node1_row.contains("198.18.0.1") && node1_row.contains("interface=eth0"),
        "{table}"
    );
    let chosen = cluster.kubectl_ok(&[
        "get",
        "nodeagent",
        "node-1",
        "-o",
        "jsonpath={.spec.tunnelEndpoint}",
    ]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&chosen).unwrap(),
        serde_json::json!({"rule": "interface=eth0", "interface": "eth0"})
    );

    // Another node's record: refused, naming both nodes.
    let run = as_node1(&[
        "patch",
        "nodeagent",
        "node-2",
        "--type=merge",
        "-p",
        &tunnel("198.18.0.1"),
    ]);
    assert!(!run.ok, "node-1 rewrote node-2's record");
    assert!(
        run.stderr
            .contains("this token is bound to node node-1, not node-2"),
        "{}",
        run.stderr
    );
    // The agent's account with a token bound to no pod: refused too.
    let token = cluster.kubectl_ok(&[
        "--namespace",
        RELEASE_NAMESPACE,
        "create",
        "token",
        "neutrino-agent",
    ]);
    let unbound = cluster.kubeconfig_for_token("unbound-agent", token.trim());
    let run = cluster.kubectl(&[
        "--kubeconfig",
        unbound.to_str().unwrap(),
        "patch",
        "nodeagent",
        "node-1",
        "--type=merge",
        "-p",
        &tunnel("198.18.0.1"),
    ]);
    assert!(
        !run.ok && run.stderr.contains("bound to no node"),
        "{}",
        run.stderr
    );

    // Another node's Port: not rewritten in place, not moved to this node,
    // not asked for while rewritten nor for another node, not deleted;
    // each refused naming the node it is bound to.
    let patch = |body: &'static str| {
        vec![
            "patch",
            "port",
            "web-2",
            "--namespace",
            "tenant-a",
            "--type=merge",
            "-p",
            body,
        ]
    };
    for (what, args) in [
        ("rewrote", patch(r#"{"spec":{"hostname":"mine"}}"#)),
        ("moved", patch(r#"{"spec":{"nodeName":"node-1"}}"#)),
        (
            "moved and rewrote",
            patch(r#"{"spec":{"nodeName":"node-1","macAddress":"02:00:00:00:00:66"}}"#),
        ),
        (
            "asked for and relabelled",
            patch(
                r#"{"metadata":{"labels":{"a":"b"},"annotations":{"neutrino.dev/takeover":"node-1/p/u/c/net1"}}}"#,
            ),
        ),
        (
            "asked for and re-held",
            patch(
                r#"{"metadata":{"annotations":{"neutrino.dev/held-by":"p/u","neutrino.dev/takeover":"node-1/p/u/c/net1"}}}"#,
            ),
        ),
        (
            "asked for on node-3's behalf",
            patch(r#"{"metadata":{"annotations":{"neutrino.dev/takeover":"node-3/p/u/c/net1"}}}"#),
        ),
        (
            "deleted",
            vec!["delete", "port", "web-2", "--namespace", "tenant-a"],
        ),
    ] {
        let run = as_node1(&args);
        assert!(
            !run.ok
                && run
                    .stderr
                    .contains("Port tenant-a/web-2 is bound to node-2"),
            "node-1's agent {what} node-2's Port: {}{}",
            run.stdout,
            run.stderr
        );
    }
    // It may ask, and the controller, finding no such pod on node-1
    // naming the Port, says so and leaves the Port where it is.
    let run = as_node1(&patch(
        r#"{"metadata":{"annotations":{"neutrino.dev/takeover":"node-1/ghost/0000/c0ffee/net1"}}}"#,
    ));
    assert!(run.ok, "{}", run.stderr);
    let web_2 = |jsonpath: &str| {
        let jsonpath = format!("jsonpath={{{jsonpath}}}");
        cluster.kubectl_ok(&[
            "get",
            "port",
            "web-2",
            "--namespace",
            "tenant-a",
            "-o",
            &jsonpath,
        ])
    };
    let refused = || web_2(".metadata.annotations.neutrino\\.dev/takeover-refused");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while refused().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the controller did not answer"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(
        refused(),
        "node-1/ghost/0000/c0ffee/net1: pod ghost does not exist, or is another pod of that name now"
    );
    assert_eq!(web_2(".spec.nodeName"), "node-2");

    // Its own record it may write, but an address its Node does not have
    // is not believed: no peer sends it tunnel traffic.
    let run = as_node1(&[
        "patch",
        "nodeagent",
        "node-1",
        "--type=merge",
        "-p",
        &tunnel("198.18.0.99"),
    ]);
    assert!(run.ok, "{}", run.stderr);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let wanted = "spec.tunnelIP 198.18.0.99 is not an address of Node node-1";
    loop {
        let log = std::fs::read_to_string(lab.lab.files().controller_log()).unwrap();
        if log.contains(wanted) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the controller believed it:\n{log}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let fdb = std::process::Command::new("bridge")
        .args(["-n", &lab.node("node-2"), "fdb", "show"])
        .output()
        .unwrap();
    let fdb = String::from_utf8_lossy(&fdb.stdout);
    assert!(
        !fdb.contains("198.18.0.99"),
        "node-2 tunnels to the claimed address:\n{fdb}"
    );

    // Put back, the node is trusted again and its port Ready. While node-1
    // was left out its port was not Ready and its agent took the port's
    // veth away, workload end and all: the lab plugs the workload again,
    // as a pod's sandbox would be.
    let run = as_node1(&[
        "patch",
        "nodeagent",
        "node-1",
        "--type=merge",
        "-p",
        &tunnel("198.18.0.1"),
    ]);
    assert!(run.ok, "{}", run.stderr);
    let summary = lab.lab.apply(&example("quickstart")).await.unwrap();
    kubectl_waits_for_every_object(cluster, "quickstart");
    examples::quickstart_ports_meet(&lab, &summary);
}
