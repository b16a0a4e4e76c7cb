//! A VM's live migration, as the plugin sees it: a second pod, on another
//! node, names the Port a running pod holds. The Port stays bound to the
//! holder's node — its FDB and neighbour entries everywhere keep pointing
//! there, and its address and MAC stay its own — while the second pod gets
//! the Port's veth straight in its namespace, on no bridge (a standby).
//! When the holder ends (KubeVirt's source pod completes once the VM runs
//! on the target), the standby takes over: the Port is bound to its node,
//! and the agent's next apply puts the veth on the bridge and moves the
//! FDB everywhere, with the VM's interface untouched.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::FIELD_MANAGER;
use super::records::{Record, Records};
use crate::execute::bounded;
use crate::stores::Stores;
use neutrino_api::{Network, Port};
use neutrino_cni::outcome::{CniError, Code};
use neutrino_core::Key;
use neutrino_core::allocate::Mac;
use neutrino_core::attachment::{ATTACHMENT_ANNOTATION, Configuration, HOLDER_ANNOTATION, Holder};
use neutrino_core::names;
use neutrino_core::reconcile::{DesiredLink, LinkKind};
use neutrino_core::scope::Source;
use neutrino_dataplane::workload;

/// How often a standby asks whether its holder has ended.
const POLL: Duration = Duration::from_millis(250);

/// Whether `pod` is the holder with `uid` and still runs: not deleted, not
/// being deleted, not finished.
pub fn holds(pod: Option<&Pod>, uid: &str) -> bool {
    pod.is_some_and(|p| {
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
        p.uid().as_deref() == Some(uid)
            && p.metadata.deletion_timestamp.is_none()
            && !matches!(phase, Some("Succeeded" | "Failed"))
    })
}

/// The Port's current holder, if its annotation names one.
pub fn holder_of(port: &Port) -> Option<Holder> {
    (port.annotations().get(HOLDER_ANNOTATION)).and_then(|v| Holder::parse(v))
}

/// Whether `holder` (in `namespace`) still runs, as the API server says.
pub async fn still_holds(
    client: &Client,
    namespace: &str,
    holder: &Holder,
) -> Result<bool, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    match bounded(pods.get_opt(&holder.pod)).await {
        Ok(pod) => Ok(holds(pod.as_ref(), &holder.uid)),
        Err(e) => Err(e.to_string()),
    }
}

/// Ends the hold of `record`'s pod on its Port, if it still has it: its
/// DEL says the pod lets go, and a pod that names the Port next, anywhere,
/// binds it at once. Conditional on the Port as read, so that a standby
/// that took over in between keeps its hold.
pub async fn let_go(client: &Client, record: &Record) -> Result<(), String> {
    let ports: Api<Port> = Api::namespaced(client.clone(), &record.namespace);
    let Some(port) = bounded(ports.get_opt(&record.port))
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(());
    };
    let holds = holder_of(&port).is_some_and(|h| h.pod == record.pod && h.uid == record.pod_uid);
    if !holds {
        return Ok(());
    }
    let body = json!({
        "metadata": {
            "resourceVersion": port.resource_version(),
            "annotations": {HOLDER_ANNOTATION: null},
        },
    });
    bounded(ports.patch(&record.port, &PatchParams::default(), &Patch::Merge(&body)))
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// What a standby's veth is: the Port's MAC and its network's MTU, no
/// addresses (a migrating VM takes its own by DHCP).
pub fn standby_configuration(
    stores: &Stores,
    key: &Key,
    port: &Port,
) -> Result<Configuration, CniError> {
    let not_yet = |what: &str| {
        CniError::new(
            Code::TryAgainLater,
            format!("Port {key} has no {what} yet"),
            "its holder's node has not had it allocated",
        )
    };
    let status = port.status.as_ref().ok_or_else(|| not_yet("status"))?;
    let mac: Mac = (status.mac_address.as_deref())
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| not_yet("MAC address"))?;
    let network = key.reference(&port.spec.network);
    let mtu = (stores.shared::<Network>(&network))
        .and_then(|n| n.status.as_ref().and_then(|s| s.mtu))
        .ok_or_else(|| not_yet("network MTU"))?;
    Ok(Configuration {
        interface: names::port(key),
        bridge: names::bridge(&network),
        peer: names::port_peer(key),
        mac,
        mtu,
        addresses: Vec::new(),
        routes: Vec::new(),
        nameservers: Vec::new(),
    })
}

/// A standby's veth, its workload end made straight in `netns` as
/// `ifname`; on no bridge, and with an alias that is not neutrino's, so
/// that the agent's applies leave it alone until the standby takes over.
pub fn standby_link(
    key: &Key,
    configuration: &Configuration,
    netns: &Path,
    ifname: &str,
) -> DesiredLink {
    DesiredLink {
        name: configuration.interface.clone(),
        kind: LinkKind::Veth {
            peer: ifname.to_string(),
            peer_mac: configuration.mac,
            peer_netns: Some(netns.to_string_lossy().into_owned()),
        },
        alias: format!("standby of port {key}"),
        mtu: Some(configuration.mtu),
        master: None,
        isolated: false,
    }
}

/// Waits for the holder of a standby's Port to end, then takes the Port
/// over for the standby's pod.
pub struct Activation {
    pub client: Client,
    pub stores: Arc<Stores>,
    pub node: String,
    pub node_netns: Option<String>,
    pub records: Records,
    pub record: Record,
}

impl Activation {
    pub async fn run(self) {
        let record = &self.record;
        let key = record.port_key();
        loop {
            tokio::time::sleep(POLL).await;
            // A DEL (the migration failed or was cancelled) ends the wait.
            match self.records.load(&record.container_id, &record.ifname) {
                Ok(Some(now)) if now.standby => {}
                _ => return,
            }
            let Some(port) = self.stores.shared::<Port>(&key) else {
                continue;
            };
            let me = Holder {
                pod: record.pod.clone(),
                uid: record.pod_uid.clone(),
            };
            let holder = holder_of(&port).filter(|h| *h != me);
            if let Some(holder) = holder {
                match still_holds(&self.client, &record.namespace, &holder).await {
                    Ok(false) => {}
                    Ok(true) => continue,
                    Err(error) => {
                        tracing::debug!(%error, pod = %holder.pod, "cannot tell whether a Port's holder runs");
                        continue;
                    }
                }
            }
            match self.take_over(&port, &me).await {
                Ok(()) => {
                    tracing::info!(
                        port = %key, pod = %record.pod, node = %self.node,
                        "took the Port over from its holder: live migration switched over"
                    );
                    return;
                }
                Err(error) => tracing::warn!(port = %key, %error, "taking a Port over"),
            }
        }
    }

    /// Makes the standby's veth neutrino's and binds the Port here, held
    /// by the standby's pod; then the record says so.
    async fn take_over(&self, port: &Port, me: &Holder) -> Result<(), String> {
        let record = &self.record;
        let key = record.port_key();
        let alias = names::alias(&format!("port {key}"));
        workload::mark(self.node_netns.as_deref(), &names::port(&key), &alias)
            .await
            .map_err(|e| e.to_string())?;
        let body = json!({
            "apiVersion": Port::api_version(&()),
            "kind": Port::kind(&()),
            "metadata": {
                "name": record.port,
                "namespace": record.namespace,
                "annotations": {
                    ATTACHMENT_ANNOTATION: format!("{}/{}", record.container_id, record.ifname),
                    HOLDER_ANNOTATION: me.to_string(),
                },
            },
            "spec": {"network": port.spec.network, "nodeName": self.node},
        });
        let ports: Api<Port> = Api::namespaced(self.client.clone(), &record.namespace);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        bounded(ports.patch(&record.port, &params, &Patch::Apply(&body)))
            .await
            .map_err(|e| e.to_string())?;
        let active = Record {
            standby: false,
            ..record.clone()
        };
        self.records.save(&active).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(uid: &str, phase: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.uid = Some(uid.into());
        pod.status = Some(PodStatus {
            phase: Some(phase.into()),
            ..PodStatus::default()
        });
        pod
    }

    #[test]
    fn a_holder_holds_while_it_runs_and_is_the_same_pod() {
        assert!(holds(Some(&pod("a", "Running")), "a"));
        assert!(holds(Some(&pod("a", "Pending")), "a"));
        assert!(
            !holds(Some(&pod("a", "Running")), "b"),
            "a new pod of the same name"
        );
        assert!(
            !holds(Some(&pod("a", "Succeeded")), "a"),
            "the source of a finished migration"
        );
        assert!(!holds(Some(&pod("a", "Failed")), "a"));
        assert!(!holds(None, "a"));
        let mut leaving = pod("a", "Running");
        leaving.metadata.deletion_timestamp = Some(Time(Default::default()));
        assert!(!holds(Some(&leaving), "a"));
    }
}
