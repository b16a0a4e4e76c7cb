//! The chart installed with the real helm into the test binary's control
//! plane, and labs whose controller and agents run with its service
//! accounts, as the chart's pods would.

use std::sync::OnceLock;
use tokio::sync::{Mutex, MutexGuard};

use neutrino::lab::{ChartRelease, Summary};

use super::TestLab;
use super::control_plane::{ControlPlane, control_plane};
use super::examples::example;

pub const RELEASE: &str = "neutrino";
pub const RELEASE_NAMESPACE: &str = "neutrino-system";

/// The chart installed once for this test binary, with helm's own output.
pub fn installed() -> &'static (ControlPlane, String) {
    static ONE: OnceLock<(ControlPlane, String)> = OnceLock::new();
    ONE.get_or_init(|| {
        let cluster = control_plane();
        let run = cluster.helm(&[
            "install",
            RELEASE,
            "charts/neutrino",
            "--namespace",
            RELEASE_NAMESPACE,
            "--create-namespace",
        ]);
        assert!(run.ok, "helm install failed:\n{}{}", run.stdout, run.stderr);
        (
            ControlPlane {
                dir: cluster.dir.clone(),
                kubeconfig: cluster.kubeconfig.clone(),
            },
            run.stdout,
        )
    })
}

pub fn cluster() -> &'static ControlPlane {
    &installed().0
}

/// Held by every test whose objects a running lab would take up.
static LABS: Mutex<()> = Mutex::const_new(());

/// Cluster labs share the cluster's node names and the examples'
/// namespaces: one runs at a time.
pub async fn one_lab_at_a_time() -> MutexGuard<'static, ()> {
    LABS.lock().await
}

/// For a test without a runtime whose objects bind the labs' node names or
/// claim what the examples claim: no lab's controller and agents see them.
pub fn no_lab_running() -> MutexGuard<'static, ()> {
    LABS.blocking_lock()
}

/// `kubectl wait` agrees that every neutrino object of the example is
/// Ready (the Secrets beside them have no conditions).
pub fn kubectl_waits_for_every_object(cluster: &ControlPlane, name: &str) {
    let manifests = neutrino::manifest::load(&example(name)).unwrap();
    let mut by_namespace: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for id in manifests.sources.keys() {
        by_namespace
            .entry(id.key.namespace.clone())
            .or_default()
            .push(format!(
                "{}.neutrino.dev/{}",
                id.kind.name().to_lowercase(),
                id.key.name
            ));
    }
    for (namespace, objects) in by_namespace {
        let mut args = vec![
            "wait",
            "--for=condition=Ready",
            "--timeout=30s",
            "-n",
            &namespace,
        ];
        args.extend(objects.iter().map(String::as_str));
        cluster.kubectl_ok(&args);
    }
}

/// Brings an example up through the cluster, the controller and the
/// agents running with the chart's service accounts, never as admin.
pub async fn up_as_the_chart_runs_it(lab: &TestLab, name: &str, nodes: usize) -> Summary {
    let cluster = cluster();
    let release: ChartRelease = format!("{RELEASE_NAMESPACE}/{RELEASE}").parse().unwrap();
    lab.lab
        .up_on_cluster(
            &example(name),
            nodes,
            &lab.name,
            &cluster.kubeconfig,
            Some(&release),
        )
        .await
        .unwrap()
}

/// Nothing the controller or an agent asked for was refused by RBAC.
pub fn nothing_was_forbidden(lab: &TestLab) {
    let mut logs = vec![lab.lab.files().controller_log()];
    let nodes = std::fs::read_dir(lab.dir.join("nodes")).unwrap();
    logs.extend(nodes.map(|n| n.unwrap().path().join("agent.log")));
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap();
        let refused: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("forbidden") || l.contains("Forbidden"))
            .collect();
        assert!(
            refused.is_empty(),
            "{}:\n{}",
            log.display(),
            refused.join("\n")
        );
    }
}

/// Creates pod `name` in `namespace`, bound to `node` with `annotations`,
/// as the scheduler would have placed it (no kubelet runs it); its uid.
/// A namespace's default ServiceAccount comes a moment after the
/// namespace: until then the pod is refused, and asked for again.
pub fn bound_pod(
    namespace: &str,
    name: &str,
    node: &str,
    annotations: &serde_json::Value,
) -> String {
    let manifest = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}],
        },
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let run = cluster().kubectl_with(&["apply", "-f", "-"], &manifest.to_string());
        if run.ok {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "creating pod {name}: {}",
            run.stderr
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    cluster().kubectl_ok(&[
        "--namespace",
        namespace,
        "get",
        "pod",
        name,
        "-o",
        "jsonpath={.metadata.uid}",
    ])
}

/// Multus's NetworkAttachmentDefinition `namespace/name` with `config`
/// (its CRD installed first, once it is not there).
pub fn network_attachment(namespace: &str, name: &str, config: &serde_json::Value) {
    let crd = super::control_plane::tools()
        .parent()
        .unwrap()
        .join("cni-bin")
        .join("nad-crd.yaml");
    cluster().kubectl_ok(&["apply", "--server-side", "-f", &crd.to_string_lossy()]);
    cluster().kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/network-attachment-definitions.k8s.cni.cncf.io",
    ]);
    let definition = serde_json::json!({
        "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"config": config.to_string()},
    });
    let run = cluster().kubectl_with(&["apply", "-f", "-"], &definition.to_string());
    assert!(run.ok, "{}", run.stderr);
}
