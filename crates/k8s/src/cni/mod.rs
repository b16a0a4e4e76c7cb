//! The agent's side of neutrino's CNI plugin: a Unix socket on the node
//! where the plugin, which holds no credentials, passes each call of a
//! container runtime (or of Multus, delegating). ADD makes or binds the
//! pod's Port, waits until the controller has allocated it and this agent
//! has plugged it, and moves the port's workload end into the pod; DEL
//! gives it back; CHECK compares; STATUS says whether this agent can plug;
//! GC and a reaper remove what no pod uses any more.

mod attach;
mod migration;
mod pods;
mod prepare;
pub mod records;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use super::execute::bounded;
use super::stores::Stores;
use neutrino_api::Port;
use neutrino_cni::outcome::{CniError, Code};
use neutrino_cni::wire::{Reply, Request};
use neutrino_cni::{Command, NetConf};
use neutrino_core::Key;
use neutrino_core::attachment::{ATTACHMENT_ANNOTATION, Configuration, Sandbox};
use neutrino_core::scope::Source;
use neutrino_dataplane::workload;
use records::{Record, Records};

/// The field manager of the Ports the plugin makes and binds.
pub const FIELD_MANAGER: &str = "neutrino-cni";

/// Where, under the agent's state directory, the attachments are recorded.
pub const RECORDS_DIR: &str = "cni";

/// The largest request read: a configuration with a prevResult.
const REQUEST_LIMIT: u64 = 1 << 20;
/// How long a connection may take to send its request.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What the agent's last apply left plugged, as ADD and STATUS read it.
#[derive(Clone, Debug, Default)]
pub struct Plugged {
    /// Each of the node's ports in the applied plan, with what its
    /// workload is given.
    pub ports: BTreeMap<Key, Configuration>,
    /// Why the agent cannot plug now, if it cannot.
    pub not_ready: Option<String>,
}

/// What the agent's loop publishes after each apply; `None` before the
/// first.
pub type PluggedSender = watch::Sender<Option<Arc<Plugged>>>;

/// What the socket and the agent's loop share: the pods' sandboxes that
/// hold this node's ports, and a lock that keeps an ADD's and an apply's
/// link changes apart.
#[derive(Clone, Default)]
pub struct Held {
    sandboxes: Arc<std::sync::Mutex<BTreeMap<Key, Sandbox>>>,
    links: Arc<tokio::sync::Mutex<()>>,
}

impl Held {
    /// The sandboxes holding ports now.
    pub fn sandboxes(&self) -> BTreeMap<Key, Sandbox> {
        self.sandboxes.lock().expect("the sandboxes' lock").clone()
    }

    fn hold(&self, port: Key, sandbox: Sandbox) {
        let mut all = self.sandboxes.lock().expect("the sandboxes' lock");
        all.insert(port, sandbox);
    }

    /// Lets `port` go from the sandbox at `netns`; a later ADD that holds
    /// it elsewhere keeps it.
    fn release(&self, port: &Key, netns: &Path) {
        let mut all = self.sandboxes.lock().expect("the sandboxes' lock");
        if all.get(port).is_some_and(|s| Path::new(&s.netns) == netns) {
            all.remove(port);
        }
    }

    /// Held while links of the node's ports change.
    pub async fn links(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.links.lock().await
    }
}

/// Whether `port` is attached through the plugin (its Port says so): its
/// veth is made only while a pod on the node holds it.
pub fn claimed(stores: &Stores, port: &Key) -> bool {
    (stores.shared::<Port>(port))
        .is_some_and(|p| p.annotations().contains_key(ATTACHMENT_ANNOTATION))
}

/// The socket's service, shared by its connections.
pub struct Service {
    client: Client,
    node: String,
    /// The namespace the agent programs (the host's when `None`).
    node_netns: Option<String>,
    records: Records,
    held: Held,
    plugged: watch::Receiver<Option<Arc<Plugged>>>,
    stores: Arc<Stores>,
    pods: Store<Pod>,
    /// The pods to prepare, until [`start`] takes them.
    to_prepare: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Pod>>>,
    /// How long ADD waits for the controller and the agent.
    patience: Duration,
}

impl Service {
    pub fn new(
        client: Client,
        node: String,
        node_netns: Option<String>,
        state_dir: &Path,
        held: Held,
        plugged: watch::Receiver<Option<Arc<Plugged>>>,
        stores: Arc<Stores>,
    ) -> Self {
        let records = Records::new(state_dir.join(RECORDS_DIR));
        // The attachments made before a restart still hold their ports.
        for record in records.all().0 {
            held.hold(record.port_key(), record.sandbox());
        }
        let (changed, to_prepare) = tokio::sync::mpsc::unbounded_channel();
        Service {
            pods: pods::watch(&client, &node, changed),
            to_prepare: std::sync::Mutex::new(Some(to_prepare)),
            client,
            node,
            node_netns,
            records,
            held,
            plugged,
            stores,
            patience: Duration::from_secs(60),
        }
    }

    /// Serves `listener` for ever, each connection on its own task.
    pub async fn serve(self: Arc<Self>, listener: UnixListener) {
        // The standbys of live migrations wait on across a restart.
        for record in self.records.all().0.into_iter().filter(|r| r.standby) {
            tokio::spawn(self.activation(record).run());
        }
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let service = self.clone();
                    tokio::spawn(async move { service.connection(stream).await });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a CNI connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn connection(&self, mut stream: UnixStream) {
        let mut text = Vec::new();
        // The plugin writes its whole request at once and shuts its side:
        // a connection that does not is not the plugin, and holds nothing.
        let read = tokio::time::timeout(
            REQUEST_READ_TIMEOUT,
            (&mut stream).take(REQUEST_LIMIT).read_to_end(&mut text),
        )
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no whole request within {REQUEST_READ_TIMEOUT:?}"),
            ))
        });
        let reply = match read {
            Err(e) => Reply::Failed(CniError::new(
                Code::Io,
                "reading the request",
                e.to_string(),
            )),
            Ok(_) => match serde_json::from_slice::<Request>(&text) {
                Err(e) => Reply::Failed(CniError::new(
                    Code::Decoding,
                    "the plugin's request",
                    e.to_string(),
                )),
                Ok(request) => self.answer(&request).await,
            },
        };
        let text = serde_json::to_vec(&reply).expect("replies serialize");
        if let Err(e) = stream.write_all(&text).await {
            tracing::warn!(error = %e, "answering the CNI plugin");
        }
    }

    /// One call, answered.
    pub async fn answer(&self, request: &Request) -> Reply {
        let started = std::time::Instant::now();
        let outcome = match request.command() {
            Some(Command::Add) => self.add(request).await.map(Reply::Attached),
            Some(Command::Del) => self.del(request).await.map(|()| Reply::Done),
            Some(Command::Check) => self.check(request).await.map(|()| Reply::Done),
            Some(Command::Status) => self.status().map(|()| Reply::Done),
            Some(Command::Gc) => self.gc(request).await.map(|()| Reply::Done),
            Some(Command::Version) | None => Err(CniError::new(
                Code::InvalidEnvironment,
                "the agent answers ADD, DEL, CHECK, STATUS and GC",
                format!("not {:?}", request.command),
            )),
        };
        let ms = started.elapsed().as_secs_f64() * 1e3;
        match &outcome {
            Ok(_) => tracing::info!(
                command = %request.command, container = %request.container_id,
                ifname = %request.ifname, ms, "CNI call served"
            ),
            Err(e) => tracing::warn!(
                command = %request.command, container = %request.container_id,
                ifname = %request.ifname, ms, error = %e, "CNI call failed"
            ),
        }
        outcome.unwrap_or_else(Reply::Failed)
    }

    fn status(&self) -> Result<(), CniError> {
        let not_ready = |why: &str| {
            CniError::new(
                Code::NotAvailable,
                "neutrino's agent on this node cannot plug ports now",
                why,
            )
        };
        match &*self.plugged.borrow() {
            None => Err(not_ready("it has not applied its node's plan yet")),
            Some(plugged) => match &plugged.not_ready {
                Some(why) => Err(not_ready(why)),
                None => Ok(()),
            },
        }
    }

    async fn gc(&self, request: &Request) -> Result<(), CniError> {
        let conf = parse_conf(&request.conf)?;
        let valid = records::valid_attachments(&request.conf)
            .map_err(|e| CniError::new(Code::InvalidConfiguration, "GC", e))?;
        let (all, unreadable) = self.records.all();
        for error in unreadable {
            tracing::warn!(%error, "an attachment record cannot be read");
        }
        let mut failed = Vec::new();
        for record in records::collectable(&all, &conf.name, &valid) {
            tracing::info!(container = %record.container_id, ifname = %record.ifname, "collected");
            if let Err(e) = self.release(record).await {
                failed.push(e);
            }
        }
        match failed.is_empty() {
            true => Ok(()),
            false => Err(CniError::new(
                Code::Agent,
                "GC could not release every attachment",
                failed.join("; "),
            )),
        }
    }

    /// The wait of the standby `record` for its Port's holder to end.
    fn activation(&self, record: Record) -> migration::Activation {
        migration::Activation {
            client: self.client.clone(),
            stores: self.stores.clone(),
            node: self.node.clone(),
            node_netns: self.node_netns.clone(),
            records: self.records.clone(),
            record,
        }
    }

    /// Takes an attachment's interface out of its pod, and forgets it.
    async fn release(&self, record: &Record) -> Result<(), String> {
        let failed =
            |e: &dyn std::fmt::Display| format!("{}/{}: {e}", record.container_id, record.ifname);
        let netns = Path::new(&record.netns);
        self.detach(Some(&record.port_key()), netns, &record.ifname, None)
            .await
            .map_err(|e| failed(&e))?;
        self.records
            .forget(&record.container_id, &record.ifname)
            .map_err(|e| failed(&e))
    }

    /// Lets the port go from the pod's sandbox: no veth is made for it
    /// until a pod holds it again, and the one there is deleted.
    async fn detach(
        &self,
        port: Option<&Key>,
        netns: &Path,
        ifname: &str,
        mac: Option<&[u8]>,
    ) -> Result<(), workload::PlugError> {
        if let Some(port) = port {
            self.held.release(port, netns);
        }
        let _links = self.held.links().await;
        workload::detach(netns, ifname, mac).await
    }

    /// Releases the attachments whose pods are gone — Multus sends GC to
    /// the cluster network only, and a DEL may have found the agent down —
    /// and deletes the Ports made for them, ahead of the garbage
    /// collector.
    pub async fn reap(&self) {
        let (all, _) = self.records.all();
        for record in all {
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), &record.namespace);
            let gone = match bounded(pods.get_opt(&record.pod)).await {
                Ok(pod) => pod.is_none_or(|p| p.uid().as_deref() != Some(&*record.pod_uid)),
                Err(e) => {
                    tracing::debug!(error = %e, pod = %record.pod, "cannot tell whether a pod is gone");
                    continue;
                }
            };
            if !gone {
                continue;
            }
            tracing::info!(
                namespace = %record.namespace, pod = %record.pod,
                container = %record.container_id, ifname = %record.ifname,
                "reaping the attachment of a pod that is gone"
            );
            if record.made_for_pod {
                self.delete_port_of(&record).await;
            }
            if let Err(error) = self.release(&record).await {
                tracing::warn!(%error, "reaping");
            }
        }
    }

    /// Deletes the Port made for `record`'s pod, if the pod still owns it.
    async fn delete_port_of(&self, record: &Record) {
        let ports: Api<Port> = Api::namespaced(self.client.clone(), &record.namespace);
        let Ok(Some(port)) = bounded(ports.get_opt(&record.port)).await else {
            return;
        };
        if !owned_by(&port, &record.pod_uid) {
            return;
        }
        let params = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: port.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        if let Err(e) = bounded(ports.delete(&record.port, &params)).await {
            tracing::warn!(error = %e, port = %record.port, "deleting the Port of a pod that is gone");
        }
    }
}

/// Whether `port` is owned by the pod `uid`.
fn owned_by(port: &Port, uid: &str) -> bool {
    (port.owner_references().iter()).any(|o| o.kind == "Pod" && o.uid == uid)
}

fn parse_conf(conf: &serde_json::Value) -> Result<NetConf, CniError> {
    NetConf::parse(&serde_json::to_vec(conf).expect("JSON values serialize"))
}

/// Binds the socket at `path`, replacing a stale one, for root only.
pub fn listen(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves the CNI socket at `path` and reaps every `every`, until the
/// process ends.
pub fn start(service: Service, path: PathBuf, every: Duration) -> std::io::Result<()> {
    let listener = listen(&path)?;
    tracing::info!(socket = %path.display(), "serving the CNI plugin");
    let service = Arc::new(service);
    let to_prepare = service.to_prepare.lock().expect("not poisoned").take();
    if let Some(pods) = to_prepare {
        tokio::spawn(service.clone().prepare_pods(pods));
    }
    tokio::spawn(service.clone().serve(listener));
    tokio::spawn(async move {
        loop {
            service.reap().await;
            tokio::time::sleep(every).await;
        }
    });
    Ok(())
}
