//! Watch caches of every kind the controller reasons about; any change
//! wakes the controller's loop. A reader that acts only on what reaches it
//! (an agent) also has the stores note what changed.

use futures::StreamExt;
use kube::core::{ApiResource, DynamicObject};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

use k8s_openapi::api::core::v1::Node;
use neutrino_api::{FloatingIP, IPClaim, NodeAgent, NodeAgentSpec, Port, SegmentClaim, Subnet};
use neutrino_core::kinds::key_of;
use neutrino_core::resolve::held_by;
use neutrino_core::scope::{Index, Source};
use neutrino_core::{
    ApiObject, Key, Kind, NodeAddresses, Object, ObjectId, Snapshot, for_each_kind, with_kind,
};

/// An object its watcher skips because it does not read as its kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Malformed {
    /// Its reference, for an Event on it.
    pub reference: k8s_openapi::api::core::v1::ObjectReference,
    /// The field that does not read, and why.
    pub field: String,
    pub error: String,
}

/// The objects skipped now, by kind, namespace and name.
pub type Skipped = Arc<Mutex<BTreeMap<(String, String, String), Malformed>>>;

/// What the watches saw change since it was last taken.
#[derive(Debug, Default)]
pub struct Changes {
    /// Objects changed, and the holders of changed claims (a segment
    /// claim's network).
    pub objects: BTreeSet<ObjectId>,
    /// Address claims changed, by namespace and name.
    pub ip_claims: BTreeSet<Key>,
    /// Segment claims changed, by name.
    pub segment_claims: BTreeSet<String>,
    /// Nodes whose NodeAgent record or Node changed.
    pub nodes: BTreeSet<String>,
    /// A watch listed its kind afresh: anything may have changed.
    pub everything: bool,
}

impl Changes {
    fn note(&mut self, change: Changed) {
        match change {
            Changed::Object(id) => {
                self.objects.insert(id);
            }
            Changed::IpClaim(key, holder) => {
                self.ip_claims.insert(key);
                self.objects.extend(holder);
            }
            Changed::SegmentClaim(name, network) => {
                self.segment_claims.insert(name);
                self.objects.insert(network);
            }
            Changed::Node(name) => {
                self.nodes.insert(name);
            }
        }
    }
}

/// What one event changed.
enum Changed {
    Object(ObjectId),
    /// A claim, and the object whose hold on it changed.
    IpClaim(Key, Option<ObjectId>),
    SegmentClaim(String, ObjectId),
    Node(String),
}

/// How a kind's event is noted, when changes are kept.
type Note<K> = fn(&K) -> Option<Changed>;

fn note_object<K: ApiObject>(object: &K) -> Option<Changed> {
    Some(Changed::Object(ObjectId::new(K::KIND, key_of(object))))
}

fn note_ip_claim(claim: &IPClaim) -> Option<Changed> {
    let holder = held_by(&claim.spec.holder).map(|h| h.object());
    Some(Changed::IpClaim(key_of(claim), holder))
}

fn note_segment_claim(claim: &SegmentClaim) -> Option<Changed> {
    let network = &claim.spec.network;
    let key = Key::new(network.namespace.clone(), network.name.clone());
    Some(Changed::SegmentClaim(
        claim.name_any(),
        ObjectId::new(Kind::Network, key),
    ))
}

fn note_node<K: Resource>(object: &K) -> Option<Changed> {
    object.meta().name.clone().map(Changed::Node)
}

/// Where changes are kept; None when nobody takes them.
type Kept = Option<Arc<Mutex<Changes>>>;

fn keep(kept: &Kept, change: impl FnOnce(&mut Changes)) {
    if let Some(kept) = kept {
        change(&mut kept.lock().expect("the changes' lock"));
    }
}

/// What a node's record and its Node say that the configuration reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Peer {
    pub spec: Option<NodeAgentSpec>,
    pub annotations: BTreeMap<String, String>,
    pub addresses: Vec<IpAddr>,
}

/// One store per kind.
pub struct Stores {
    skipped: Skipped,
    kept: Kept,
    /// Each kind of the API's `Store<K>`, by its kind.
    objects: BTreeMap<Kind, Box<dyn Any + Send + Sync>>,
    ip_claims: Store<IPClaim>,
    segment_claims: Store<SegmentClaim>,
    agents: Store<NodeAgent>,
    nodes: Store<Node>,
}

/// Starts a reflector for `K` that notifies `changed` on every event. A
/// failing watch is retried with backoff and logged, never fatal. Objects
/// are read leniently: one that does not parse as `K` (stored before a
/// schema change, or written around the schema) is skipped with a warning
/// naming it and the field, instead of failing the list of its whole kind
/// and with it every object of that kind. An object that turns malformed
/// keeps its last good version in the cache, so nothing it holds is
/// released on its account.
fn watch<K>(
    client: &Client,
    changed: &Arc<Notify>,
    skipped: &Skipped,
    kept: &Kept,
    note: Note<K>,
) -> Store<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, mut writer) = reflector::store();
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::erase::<K>(&()));
    let changed = changed.clone();
    let cached = reader.clone();
    let skipped = skipped.clone();
    let kept = kept.clone();
    tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => {
                    if let Some(event) = typed::<K>(event, &cached, &skipped) {
                        writer.apply_watcher_event(&event);
                        keep(&kept, |changes| match &event {
                            watcher::Event::Apply(o) | watcher::Event::Delete(o) => {
                                if let Some(change) = note(o) {
                                    changes.note(change);
                                }
                            }
                            // A relist may have missed deletions and
                            // changes: it is told as everything.
                            _ => changes.everything = true,
                        });
                        changed.notify_one();
                    }
                }
                Err(e) => {
                    tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying")
                }
            }
        }
    });
    reader
}

/// The event with its object read as `K`; None for an object that does not
/// parse, which is logged and recorded in `skipped` (until it reads again or
/// is deleted) — except a deletion, which removes the cached version of a
/// malformed object.
fn typed<K>(
    event: watcher::Event<DynamicObject>,
    cached: &Store<K>,
    skipped: &Skipped,
) -> Option<watcher::Event<K>>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned,
{
    use watcher::Event;
    let kind = K::kind(&()).to_string();
    let read = |object: DynamicObject, deleted: bool| -> Option<K> {
        let namespace = object.metadata.namespace.clone().unwrap_or_default();
        let name = object.metadata.name.clone().unwrap_or_default();
        let id = (kind.clone(), namespace.clone(), name.clone());
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some(K::api_version(&()).to_string()),
            kind: Some(kind.clone()),
            namespace: object.metadata.namespace.clone(),
            name: object.metadata.name.clone(),
            uid: object.metadata.uid.clone(),
            resource_version: object.metadata.resource_version.clone(),
            field_path: None,
        };
        let value = serde_json::to_value(&object).ok()?;
        let mut skipped = skipped.lock().expect("the skipped objects' lock");
        match serde_path_to_error::deserialize(value) {
            Ok(typed) => {
                skipped.remove(&id);
                Some(typed)
            }
            Err(_) if deleted => {
                skipped.remove(&id);
                None
            }
            Err(e) => {
                tracing::warn!(
                    %kind,
                    %namespace,
                    %name,
                    field = %e.path(),
                    error = %e.inner(),
                    "skipping a malformed object"
                );
                skipped.insert(
                    id,
                    Malformed {
                        reference,
                        field: e.path().to_string(),
                        error: e.inner().to_string(),
                    },
                );
                None
            }
        }
    };
    Some(match event {
        Event::Apply(object) => Event::Apply(read(object, false)?),
        Event::Delete(object) => {
            let mut key = ObjectRef::<K>::new(&object.name_any());
            if let Some(namespace) = &object.metadata.namespace {
                key = key.within(namespace);
            }
            let last = cached.get(&key).map(|k| (*k).clone());
            Event::Delete(read(object, true).or(last)?)
        }
        Event::InitApply(object) => Event::InitApply(read(object, false)?),
        Event::Init => Event::Init,
        Event::InitDone => Event::InitDone,
    })
}

/// The cache's objects by key, shared with the cache rather than copied.
fn shared<K: Resource<DynamicType = ()> + Clone>(store: &Store<K>) -> BTreeMap<Key, Arc<K>> {
    store
        .state()
        .into_iter()
        .map(|o| (key_of(&*o), o))
        .collect()
}

impl Stores {
    /// Starts watching everything; `changed` is notified on every event.
    pub fn start(client: &Client, changed: &Arc<Notify>) -> Self {
        Self::watching(client, changed, None)
    }

    /// Starts watching everything, and notes what changed for
    /// `take_changes`.
    pub fn start_noting_changes(client: &Client, changed: &Arc<Notify>) -> Self {
        Self::watching(client, changed, Some(Arc::default()))
    }

    fn watching(client: &Client, changed: &Arc<Notify>, kept: Kept) -> Self {
        let skipped = Skipped::default();
        let mut objects: BTreeMap<Kind, Box<dyn Any + Send + Sync>> = BTreeMap::new();
        for_each_kind!(K => {
            let store = watch::<K>(client, changed, &skipped, &kept, note_object::<K>);
            objects.insert(K::KIND, Box::new(store));
        });
        Self {
            objects,
            ip_claims: watch(client, changed, &skipped, &kept, note_ip_claim),
            segment_claims: watch(client, changed, &skipped, &kept, note_segment_claim),
            agents: watch(client, changed, &skipped, &kept, note_node::<NodeAgent>),
            nodes: watch(client, changed, &skipped, &kept, note_node::<Node>),
            skipped,
            kept,
        }
    }

    /// What changed since the last call; everything on the first, and
    /// always when the stores were started without noting changes.
    pub fn take_changes(&self) -> Changes {
        match &self.kept {
            Some(kept) => std::mem::take(&mut *kept.lock().expect("the changes' lock")),
            None => Changes {
                everything: true,
                ..Changes::default()
            },
        }
    }

    /// A copy of the object `id` names, as the cache holds it now.
    pub fn object(&self, id: &ObjectId) -> Option<Object> {
        with_kind!(id.kind, K => self
            .objects::<K>()
            .get(&reference(&id.key))
            .map(|o| (*o).clone().into_object()))
    }

    /// Takes `changes` into `index`.
    pub fn update(&self, index: &mut Index, changes: &Changes) {
        for id in &changes.objects {
            index.set(id, self.object(id).as_ref());
        }
        for key in &changes.ip_claims {
            index.set_ip_claim(key, self.ip_claim(key).as_deref());
        }
        for name in &changes.segment_claims {
            index.set_segment_claim(name, self.segment_claim(name).as_deref());
        }
    }

    /// Node `name`'s record, as the cache holds it now.
    pub fn agent(&self, name: &str) -> Option<Arc<NodeAgent>> {
        self.agents.get(&ObjectRef::new(name))
    }

    /// Every node's record and addresses as the caches hold them now.
    pub fn peers(&self) -> BTreeMap<String, Peer> {
        let mut names: BTreeSet<String> = self
            .agents
            .state()
            .iter()
            .filter_map(|a| a.metadata.name.clone())
            .collect();
        names.extend(self.nodes.state().iter().map(|n| n.name_any()));
        names
            .into_iter()
            .map(|name| {
                let peer = self.peer(&name);
                (name, peer)
            })
            .collect()
    }

    /// What node `name`'s record and Node say now.
    pub fn peer(&self, name: &str) -> Peer {
        let agent = self.agents.get(&ObjectRef::new(name));
        let node = self.nodes.get(&ObjectRef::new(name));
        Peer {
            spec: agent.as_ref().map(|a| a.spec.clone()),
            annotations: agent.map(|a| a.annotations().clone()).unwrap_or_default(),
            addresses: node.as_deref().map(addresses_of).unwrap_or_default(),
        }
    }

    /// The objects the watchers skip now because they do not read as
    /// their kind.
    pub fn malformed(&self) -> Vec<Malformed> {
        self.skipped
            .lock()
            .expect("the skipped objects' lock")
            .values()
            .cloned()
            .collect()
    }

    /// The store of kind `K`.
    fn objects<K: ApiObject>(&self) -> &Store<K> {
        self.objects[&K::KIND]
            .downcast_ref()
            .expect("every kind has a store of its type")
    }

    /// Every object of kind `K` the cache holds.
    pub fn all<K: ApiObject>(&self) -> Vec<Arc<K>> {
        self.objects::<K>().state()
    }

    /// Waits until every store has had its first full list.
    pub async fn ready(&self) {
        for_each_kind!(K => {
            let _ = self.objects::<K>().wait_until_ready().await;
        });
        let _ = futures::join!(
            self.ip_claims.wait_until_ready(),
            self.segment_claims.wait_until_ready(),
            self.agents.wait_until_ready(),
            self.nodes.wait_until_ready(),
        );
    }

    /// Everything as one snapshot.
    pub fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot {
            ip_claims: shared(&self.ip_claims),
            segment_claims: self
                .segment_claims
                .state()
                .into_iter()
                .map(|c| (c.name_any(), c))
                .collect(),
            ..Snapshot::default()
        };
        for_each_kind!(K => *K::of_mut(&mut snapshot) = shared(self.objects::<K>()));
        snapshot
    }

    /// The subnets of network `network` in `namespace`, by name and CIDR,
    /// as the cache holds them now.
    pub fn subnets_of(&self, namespace: &str, network: &str) -> Vec<(String, ipnet::IpNet)> {
        (self.objects::<Subnet>().state().iter())
            .filter(|s| s.namespace().as_deref() == Some(namespace) && s.spec.network == network)
            .filter_map(|s| Some((s.name_any(), s.spec.cidr.parse().ok()?)))
            .collect()
    }

    /// The agents' records.
    pub fn agents(&self) -> Vec<NodeAgent> {
        self.agents
            .state()
            .into_iter()
            .map(|a| (*a).clone())
            .collect()
    }

    /// Each Node's addresses, as its kubelet reports them.
    pub fn node_addresses(&self) -> NodeAddresses {
        self.nodes
            .state()
            .iter()
            .map(|node| (node.name_any(), addresses_of(node)))
            .collect()
    }
}

/// A Node's addresses, as its kubelet reports them.
fn addresses_of(node: &Node) -> Vec<IpAddr> {
    node.status
        .iter()
        .flat_map(|s| s.addresses.iter().flatten())
        .filter_map(|a| a.address.parse().ok())
        .collect()
}

/// A cached object's reference.
fn reference<K: Resource<DynamicType = ()>>(key: &Key) -> ObjectRef<K> {
    let reference = ObjectRef::<K>::new(&key.name);
    if key.namespace.is_empty() {
        reference
    } else {
        reference.within(&key.namespace)
    }
}

impl Source for Stores {
    fn shared<K: ApiObject>(&self, key: &Key) -> Option<Arc<K>> {
        self.objects::<K>().get(&reference(key))
    }

    fn ip_claim(&self, key: &Key) -> Option<Arc<IPClaim>> {
        self.ip_claims.get(&reference(key))
    }

    fn segment_claim(&self, name: &str) -> Option<Arc<SegmentClaim>> {
        self.segment_claims.get(&ObjectRef::new(name))
    }
}

impl neutrino_core::metadata::Objects for Stores {
    fn ports_in(&self, namespace: &str) -> Vec<Arc<Port>> {
        in_namespace(self.objects::<Port>(), namespace)
    }

    fn floating_ips_in(&self, namespace: &str) -> Vec<Arc<FloatingIP>> {
        in_namespace(self.objects::<FloatingIP>(), namespace)
    }

    fn subnet(&self, key: &Key) -> Option<Arc<Subnet>> {
        self.objects::<Subnet>().get(&reference(key))
    }
}

/// The cached objects of `namespace`.
fn in_namespace<K: ApiObject>(store: &Store<K>, namespace: &str) -> Vec<Arc<K>> {
    (store.state().into_iter())
        .filter(|o| o.namespace().as_deref() == Some(namespace))
        .collect()
}
