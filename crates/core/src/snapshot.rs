//! A consistent view of every neutrino object: what the core works on.

use std::collections::{BTreeMap, BTreeSet};
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
    pub ip_claims: BTreeMap<Key, Arc<IPClaim>>,
    /// Segment claims by name.
    pub segment_claims: BTreeMap<String, Arc<SegmentClaim>>,
    /// For a part of a larger snapshot: the names the whole holds.
    pub whole: Option<Arc<Names>>,
}

/// Which namespaces hold an object of each kind and name, so that a part
/// of a snapshot explains a reference to a missing object as the whole
/// would ("the one in namespace …").
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Names(BTreeMap<(Kind, String), BTreeSet<String>>);

impl Names {
    pub fn of(snapshot: &Snapshot) -> Self {
        let mut names = Names::default();
        crate::for_each_kind!(K => for key in K::of(snapshot).keys() {
            names.set(&ObjectId::new(K::KIND, key.clone()), true);
        });
        names
    }

    /// Notes that the object `id` names is there, or is gone.
    pub fn set(&mut self, id: &ObjectId, present: bool) {
        let name = (id.kind, id.key.name.clone());
        if present {
            self.0
                .entry(name)
                .or_default()
                .insert(id.key.namespace.clone());
        } else if let Some(namespaces) = self.0.get_mut(&name) {
            namespaces.remove(&id.key.namespace);
            if namespaces.is_empty() {
                self.0.remove(&name);
            }
        }
    }
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
        if let Some(whole) = &self.whole {
            let name = (kind, name.to_string());
            return whole.0.get(&name).into_iter().flatten().cloned().collect();
        }
        crate::with_kind!(kind, K => K::of(self)
            .keys()
            .filter(|k| k.name == name)
            .map(|k| k.namespace.clone())
            .collect())
    }
}
