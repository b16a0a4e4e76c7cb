//! A consistent view of every neutrino object: what the core works on.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{ApiObject, Key, Kind, Object, ObjectId};
use neutrino_api::{
    FloatingIP, IPClaim, Network, Port, Router, SecurityGroup, SegmentClaim, Subnet,
};

/// Every object, by kind and key. Ordered maps make every pass over it
/// deterministic whatever order the objects arrived in. Objects are shared,
/// not owned: a snapshot taken from the watch caches, or a part of one,
/// holds the caches' own copies, and one changed (`Arc::make_mut`) is
/// copied then.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub networks: BTreeMap<Key, Arc<Network>>,
    pub subnets: BTreeMap<Key, Arc<Subnet>>,
    pub ports: BTreeMap<Key, Arc<Port>>,
    pub routers: BTreeMap<Key, Arc<Router>>,
    pub floating_ips: BTreeMap<Key, Arc<FloatingIP>>,
    pub security_groups: BTreeMap<Key, Arc<SecurityGroup>>,
    /// Address claims by namespace and name (on a cluster; none from files).
    pub ip_claims: BTreeMap<Key, IPClaim>,
    /// Segment claims by name.
    pub segment_claims: BTreeMap<String, SegmentClaim>,
}

impl Snapshot {
    /// Adds an object; an object of the same kind and key is an error that
    /// hands the rejected object back.
    pub fn insert(&mut self, object: Object) -> Result<(), Box<Object>> {
        object.insert_into(self)
    }

    /// Whether this snapshot holds the object `id` names.
    pub fn contains(&self, id: &ObjectId) -> bool {
        crate::with_kind!(id.kind, K => K::of(self).contains_key(&id.key))
    }

    /// A copy of the object `id` names.
    pub fn object(&self, id: &ObjectId) -> Option<Object> {
        crate::with_kind!(id.kind, K => K::of(self).get(&id.key).map(|o| K::into_object((**o).clone())))
    }

    /// Whether it holds no object of any of the six kinds (claims aside).
    pub fn has_no_objects(&self) -> bool {
        let mut none = true;
        crate::for_each_kind!(K => none &= K::of(self).is_empty());
        none
    }

    /// Namespaces that hold an object of `kind` called `name`, for messages
    /// about references that point at the wrong namespace.
    pub fn namespaces_holding(&self, kind: Kind, name: &str) -> Vec<String> {
        crate::with_kind!(kind, K => K::of(self)
            .keys()
            .filter(|k| k.name == name)
            .map(|k| k.namespace.clone())
            .collect())
    }
}
