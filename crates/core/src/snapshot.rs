//! A consistent view of every neutrino object: what the core works on.

use kube_core::ResourceExt;
use std::collections::BTreeMap;

use super::{Key, Kind, ObjectId};
use neutrino_api::{
    FloatingIP, IPClaim, Network, Port, Router, SecurityGroup, SegmentClaim, Subnet,
};

/// One object of any kind.
#[derive(Clone, Debug)]
pub enum Object {
    Network(Network),
    Subnet(Subnet),
    Port(Port),
    Router(Router),
    FloatingIP(FloatingIP),
    SecurityGroup(SecurityGroup),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Self::Network(_) => Kind::Network,
            Self::Subnet(_) => Kind::Subnet,
            Self::Port(_) => Kind::Port,
            Self::Router(_) => Kind::Router,
            Self::FloatingIP(_) => Kind::FloatingIP,
            Self::SecurityGroup(_) => Kind::SecurityGroup,
        }
    }

    pub fn key(&self) -> Key {
        let (namespace, name) = match self {
            Self::Network(o) => (o.namespace(), o.name_any()),
            Self::Subnet(o) => (o.namespace(), o.name_any()),
            Self::Port(o) => (o.namespace(), o.name_any()),
            Self::Router(o) => (o.namespace(), o.name_any()),
            Self::FloatingIP(o) => (o.namespace(), o.name_any()),
            Self::SecurityGroup(o) => (o.namespace(), o.name_any()),
        };
        Key::new(namespace.unwrap_or_else(|| "default".into()), name)
    }

    pub fn id(&self) -> ObjectId {
        ObjectId::new(self.kind(), self.key())
    }
}

/// Every object, by kind and key. Ordered maps make every pass over it
/// deterministic whatever order the objects arrived in.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub networks: BTreeMap<Key, Network>,
    pub subnets: BTreeMap<Key, Subnet>,
    pub ports: BTreeMap<Key, Port>,
    pub routers: BTreeMap<Key, Router>,
    pub floating_ips: BTreeMap<Key, FloatingIP>,
    pub security_groups: BTreeMap<Key, SecurityGroup>,
    /// Address claims by namespace and name (on a cluster; none from files).
    pub ip_claims: BTreeMap<Key, IPClaim>,
    /// Segment claims by name.
    pub segment_claims: BTreeMap<String, SegmentClaim>,
}

impl Snapshot {
    /// Adds an object; an object of the same kind and key is an error that
    /// hands the rejected object back.
    pub fn insert(&mut self, object: Object) -> Result<(), Box<Object>> {
        fn put<T>(
            map: &mut BTreeMap<Key, T>,
            key: Key,
            value: T,
            wrap: fn(T) -> Object,
        ) -> Result<(), Box<Object>> {
            if map.contains_key(&key) {
                return Err(Box::new(wrap(value)));
            }
            map.insert(key, value);
            Ok(())
        }
        let key = object.key();
        match object {
            Object::Network(o) => put(&mut self.networks, key, o, Object::Network),
            Object::Subnet(o) => put(&mut self.subnets, key, o, Object::Subnet),
            Object::Port(o) => put(&mut self.ports, key, o, Object::Port),
            Object::Router(o) => put(&mut self.routers, key, o, Object::Router),
            Object::FloatingIP(o) => put(&mut self.floating_ips, key, o, Object::FloatingIP),
            Object::SecurityGroup(o) => {
                put(&mut self.security_groups, key, o, Object::SecurityGroup)
            }
        }
    }

    /// Namespaces that hold an object of `kind` called `name`, for messages
    /// about references that point at the wrong namespace.
    pub fn namespaces_holding(&self, kind: Kind, name: &str) -> Vec<String> {
        fn find<T>(map: &BTreeMap<Key, T>, name: &str) -> Vec<String> {
            map.keys()
                .filter(|k| k.name == name)
                .map(|k| k.namespace.clone())
                .collect()
        }
        match kind {
            Kind::Network => find(&self.networks, name),
            Kind::Subnet => find(&self.subnets, name),
            Kind::Port => find(&self.ports, name),
            Kind::Router => find(&self.routers, name),
            Kind::FloatingIP => find(&self.floating_ips, name),
            Kind::SecurityGroup => find(&self.security_groups, name),
        }
    }
}
