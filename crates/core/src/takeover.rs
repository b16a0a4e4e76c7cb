//! Moving a Port bound to one node to another: the target of a VM's live
//! migration once its source pod ended, or a pod on another node naming a
//! Port no running pod holds. An agent does not rebind another node's Port
//! itself — the admission policy refuses it, or a compromised node would
//! take any Port it likes. It asks, in the Port's [`TAKEOVER_ANNOTATION`],
//! and the controller, which reads the pods, binds the Port when the pod
//! that asks runs on the node that asks and names the Port, and the pod
//! holding it no longer runs. Pure: the controller reads the pods.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube_core::ResourceExt;

use crate::attachment::{HOLDER_ANNOTATION, Holder};
use neutrino_api::Port;

/// The annotation an agent asks with: `<node>/<pod>/<pod uid>/<container
/// id>/<interface>` — the node that takes the Port, the pod that will hold
/// it (in the Port's namespace) and the attachment it is for.
pub const TAKEOVER_ANNOTATION: &str = "neutrino.dev/takeover";

/// Where the controller says why it did not: `<the request>: <reason>`.
pub const REFUSED_ANNOTATION: &str = "neutrino.dev/takeover-refused";

/// The pod annotation that names existing Ports for a pod's interfaces: a
/// JSON object from the interface name, the network configuration's name
/// or the Network's name to the Port — how a VM keeps its address and MAC
/// from pod to pod.
pub const PORTS_ANNOTATION: &str = "neutrino.dev/ports";

/// What an agent asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Takeover {
    pub node: String,
    pub pod: Holder,
    pub container_id: String,
    pub interface: String,
}

impl Takeover {
    /// The request an annotation's value is; `None` when it does not read.
    pub fn parse(value: &str) -> Option<Takeover> {
        let parts: Vec<&str> = value.split('/').collect();
        let [node, pod, uid, container_id, interface] = parts[..] else {
            return None;
        };
        (parts.iter().all(|p| !p.is_empty())).then(|| Takeover {
            node: node.into(),
            pod: Holder {
                pod: pod.into(),
                uid: uid.into(),
            },
            container_id: container_id.into(),
            interface: interface.into(),
        })
    }

    /// The attachment, as the Port's attachment annotation names it.
    pub fn attachment(&self) -> String {
        format!("{}/{}", self.container_id, self.interface)
    }
}

impl std::fmt::Display for Takeover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.node, self.pod, self.container_id, self.interface
        )
    }
}

/// Why the controller did not move a Port.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{TAKEOVER_ANNOTATION} {0:?} is not NODE/POD/UID/CONTAINER/INTERFACE")]
    Malformed(String),
    #[error("pod {0} does not exist, or is another pod of that name now")]
    NoSuchPod(String),
    #[error("pod {pod} is scheduled to {}, not node {node}", .actual.as_deref().map_or("no node".to_string(), |n| format!("node {n}")))]
    OtherNode {
        pod: String,
        node: String,
        actual: Option<String>,
    },
    #[error("pod {0} has ended")]
    Ended(String),
    #[error("pod {pod} does not name Port {port} in its annotation {PORTS_ANNOTATION}")]
    NotNamed { pod: String, port: String },
    #[error("pod {holder} on node {node} holds it and still runs")]
    HolderRuns { holder: String, node: String },
}

/// Whether `pod` is the pod with `uid` and still runs: not deleted, not
/// being deleted, not finished.
pub fn holds(pod: Option<&Pod>, uid: &str) -> bool {
    pod.is_some_and(|p| {
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
        p.uid().as_deref() == Some(uid)
            && p.metadata.deletion_timestamp.is_none()
            && !matches!(phase, Some("Succeeded" | "Failed"))
    })
}

/// The pod holding `port`, if its annotation names one.
pub fn holder_of(port: &Port) -> Option<Holder> {
    (port.annotations().get(HOLDER_ANNOTATION)).and_then(|v| Holder::parse(v))
}

/// Whether `pod`'s annotation names the Port `port`.
pub fn names_port(pod: &Pod, port: &str) -> bool {
    (pod.annotations().get(PORTS_ANNOTATION))
        .and_then(|text| serde_json::from_str::<BTreeMap<String, String>>(text).ok())
        .is_some_and(|map| map.values().any(|p| p == port))
}

/// Whether `port` may be moved as `request` asks: `asking` is the pod it
/// names (as read), `holder` the pod that holds the Port now, if another.
pub fn decide(
    port: &Port,
    request: &Takeover,
    asking: Option<&Pod>,
    holder: Option<&Pod>,
) -> Result<(), Refusal> {
    let name = &request.pod.pod;
    let Some(pod) = asking.filter(|p| p.uid().as_deref() == Some(&request.pod.uid)) else {
        return Err(Refusal::NoSuchPod(name.clone()));
    };
    let scheduled = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    if scheduled.as_deref() != Some(request.node.as_str()) {
        return Err(Refusal::OtherNode {
            pod: name.clone(),
            node: request.node.clone(),
            actual: scheduled,
        });
    }
    if !holds(Some(pod), &request.pod.uid) {
        return Err(Refusal::Ended(name.clone()));
    }
    if !names_port(pod, &port.name_any()) {
        return Err(Refusal::NotNamed {
            pod: name.clone(),
            port: port.name_any(),
        });
    }
    if let Some(current) = holder_of(port).filter(|h| *h != request.pod)
        && holds(holder, &current.uid)
    {
        return Err(Refusal::HolderRuns {
            holder: current.pod,
            node: port.spec.node_name.clone().unwrap_or_default(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use neutrino_api::PortSpec;

    fn pod(name: &str, uid: &str, node: &str, phase: &str, ports: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some(name.into());
        pod.metadata.uid = Some(uid.into());
        pod.metadata.annotations = Some([(PORTS_ANNOTATION.into(), ports.into())].into());
        pod.spec = Some(PodSpec {
            node_name: Some(node.into()),
            ..PodSpec::default()
        });
        pod.status = Some(PodStatus {
            phase: Some(phase.into()),
            ..PodStatus::default()
        });
        pod
    }

    fn port(holder: &str) -> Port {
        let spec: PortSpec =
            serde_json::from_value(serde_json::json!({"network": "vm-net", "nodeName": "node-1"}))
                .unwrap();
        let mut port = Port::new("vm-db", spec);
        port.metadata.annotations = Some([(HOLDER_ANNOTATION.into(), holder.into())].into());
        port
    }

    const VM: &str = r#"{"net1": "vm-db"}"#;

    #[test]
    fn a_request_reads_back_as_written() {
        let request = Takeover::parse("node-2/launcher-b/u2/c0ffee/net1").unwrap();
        assert_eq!(request.node, "node-2");
        assert_eq!(request.attachment(), "c0ffee/net1");
        assert_eq!(request.to_string(), "node-2/launcher-b/u2/c0ffee/net1");
        for bad in [
            "node-2/launcher-b/u2/c0ffee",
            "node-2//u2/c/i",
            "a/b/c/d/e/f",
        ] {
            assert_eq!(Takeover::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_target_takes_over_once_the_source_ended() {
        let request = Takeover::parse("node-2/launcher-b/u2/c/net1").unwrap();
        let target = pod("launcher-b", "u2", "node-2", "Running", VM);
        let source = pod("launcher-a", "u1", "node-1", "Running", VM);
        let port = port("launcher-a/u1");
        assert_eq!(
            decide(&port, &request, Some(&target), Some(&source)),
            Err(Refusal::HolderRuns {
                holder: "launcher-a".into(),
                node: "node-1".into()
            })
        );
        let ended = pod("launcher-a", "u1", "node-1", "Succeeded", VM);
        assert_eq!(decide(&port, &request, Some(&target), Some(&ended)), Ok(()));
        assert_eq!(decide(&port, &request, Some(&target), None), Ok(()));
        // A new pod of the holder's name is not the holder.
        let again = pod("launcher-a", "u9", "node-1", "Running", VM);
        assert_eq!(decide(&port, &request, Some(&target), Some(&again)), Ok(()));
    }

    #[test]
    fn a_node_takes_no_port_for_a_pod_that_is_not_its_own_or_does_not_name_it() {
        let request = Takeover::parse("node-3/launcher-b/u2/c/net1").unwrap();
        let port = port("launcher-a/u1");
        let on_two = pod("launcher-b", "u2", "node-2", "Running", VM);
        assert!(matches!(
            decide(&port, &request, Some(&on_two), None),
            Err(Refusal::OtherNode { .. })
        ));
        let request = Takeover::parse("node-2/launcher-b/u2/c/net1").unwrap();
        let other = pod(
            "launcher-b",
            "u2",
            "node-2",
            "Running",
            r#"{"net1": "web"}"#,
        );
        assert!(matches!(
            decide(&port, &request, Some(&other), None),
            Err(Refusal::NotNamed { .. })
        ));
        let renamed = pod("launcher-b", "u3", "node-2", "Running", VM);
        assert_eq!(
            decide(&port, &request, Some(&renamed), None),
            Err(Refusal::NoSuchPod("launcher-b".into()))
        );
        assert_eq!(
            decide(&port, &request, None, None),
            Err(Refusal::NoSuchPod("launcher-b".into()))
        );
        let mut leaving = on_two.clone();
        leaving.metadata.deletion_timestamp = Some(Time(Default::default()));
        assert_eq!(
            decide(&port, &request, Some(&leaving), None),
            Err(Refusal::Ended("launcher-b".into()))
        );
    }
}
