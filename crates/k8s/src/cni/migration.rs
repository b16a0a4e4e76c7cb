//! A VM's live migration, as the plugin sees it: a second pod, on another
//! node, names the Port a running pod holds. The Port stays bound to the
//! holder's node — its FDB and neighbour entries everywhere keep pointing
//! there, and its address and MAC stay its own — while the second pod gets
//! the Port's veth straight in its namespace, on no bridge (a standby).
//! When the holder ends (KubeVirt's source pod completes once the VM runs
//! on the target), the standby takes over: the controller, asked, binds the
//! Port to its node (see [`neutrino_core::takeover`]), and the agent's next
//! apply puts the veth on the bridge and moves the FDB everywhere, with the
//! VM's interface untouched.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
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
use neutrino_core::attachment::{Configuration, HOLDER_ANNOTATION, Holder};
use neutrino_core::names;
use neutrino_core::reconcile::{DesiredLink, LinkKind};
use neutrino_core::scope::Source;
use neutrino_core::takeover::{
    REFUSED_ANNOTATION, TAKEOVER_ANNOTATION, Takeover, holder_of, holds,
};
use neutrino_dataplane::workload;

/// How often a standby asks whether its holder has ended.
const POLL: Duration = Duration::from_millis(250);

/// How long a standby waits for the controller to answer, before asking
/// again.
const ASK_PATIENCE: Duration = Duration::from_secs(10);

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

/// How the controller answered a takeover.
pub enum Answer {
    Granted,
    Refused(String),
    /// Not within the time given.
    Silent,
}

/// Asks the controller to bind the Port `key` as `request` says, and waits
/// up to `patience` for it to answer.
pub async fn ask_to_take_over(
    client: &Client,
    stores: &Stores,
    key: &Key,
    request: &Takeover,
    patience: Duration,
) -> Result<Answer, String> {
    let body = json!({
        "metadata": {"annotations": {
            TAKEOVER_ANNOTATION: request.to_string(),
            REFUSED_ANNOTATION: null,
        }},
    });
    let ports: Api<Port> = Api::namespaced(client.clone(), &key.namespace);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    bounded(ports.patch(&key.name, &params, &Patch::Merge(&body)))
        .await
        .map_err(|e| e.to_string())?;
    let refused_prefix = format!("{request}: ");
    let deadline = tokio::time::Instant::now() + patience;
    while tokio::time::Instant::now() < deadline {
        if let Some(port) = stores.shared::<Port>(key) {
            if port.spec.node_name.as_deref() == Some(request.node.as_str())
                && holder_of(&port).as_ref() == Some(&request.pod)
            {
                return Ok(Answer::Granted);
            }
            let refused = port.annotations().get(REFUSED_ANNOTATION);
            if let Some(why) = refused.and_then(|r| r.strip_prefix(&refused_prefix)) {
                return Ok(Answer::Refused(why.to_string()));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Answer::Silent)
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
            match self.take_over(&me).await {
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

    /// Has the controller bind the Port here, held by the standby's pod,
    /// then makes the standby's veth neutrino's; then the record says so.
    /// Until the veth is marked, the agent's applies leave it alone.
    async fn take_over(&self, me: &Holder) -> Result<(), String> {
        let record = &self.record;
        let key = record.port_key();
        let request = Takeover {
            node: self.node.clone(),
            pod: me.clone(),
            container_id: record.container_id.clone(),
            interface: record.ifname.clone(),
        };
        match ask_to_take_over(&self.client, &self.stores, &key, &request, ASK_PATIENCE).await? {
            Answer::Granted => {}
            Answer::Refused(why) => return Err(format!("the controller refused: {why}")),
            Answer::Silent => {
                return Err(format!(
                    "the controller did not answer within {} s",
                    ASK_PATIENCE.as_secs()
                ));
            }
        }
        let alias = names::alias(&format!("port {key}"));
        workload::mark(self.node_netns.as_deref(), &names::port(&key), &alias)
            .await
            .map_err(|e| e.to_string())?;
        let active = Record {
            standby: false,
            ..record.clone()
        };
        self.records.save(&active).map_err(|e| e.to_string())
    }
}
