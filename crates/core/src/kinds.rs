//! The six kinds, described once: each API type's [`Kind`], where its
//! objects sit in a [`Snapshot`] and their verdicts in a [`Resolution`],
//! and what its status shows of an allocation. Code that does the same for
//! every kind goes through [`with_kind!`](crate::with_kind) or
//! [`for_each_kind!`](crate::for_each_kind) rather than an arm per kind,
//! so a new kind is an entry here (besides its API type, resolver and
//! planner section).

use kube_core::object::HasStatus;
use kube_core::{NamespaceResourceScope, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::resolve::{
    FloatingIpState, NetworkState, PortState, Resolution, RouterState, SecurityGroupState,
    SubnetState, Verdict,
};
use super::{Key, ObjectId, Snapshot};
use neutrino_api::{
    AllocatedIP, FloatingIPStatus, NetworkStatus, NodeRealisation, ObjectStatus, PortStatus,
    RouterGatewayStatus, RouterStatus, SecurityGroupStatus, SubnetStatus,
};
#[doc(hidden)]
pub use neutrino_api::{FloatingIP, Network, Port, Router, SecurityGroup, Subnet};

/// The six kinds of the neutrino API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Kind {
    Network,
    Subnet,
    Port,
    Router,
    FloatingIP,
    SecurityGroup,
}

impl Kind {
    /// Every kind, in the order passes over a snapshot take.
    pub const ALL: [Kind; 6] = [
        Kind::Network,
        Kind::Subnet,
        Kind::Port,
        Kind::Router,
        Kind::FloatingIP,
        Kind::SecurityGroup,
    ];

    /// What others refer to before what refers to it: the order to create in.
    pub const CREATION_ORDER: [Kind; 6] = [
        Kind::SecurityGroup,
        Kind::Network,
        Kind::Subnet,
        Kind::Port,
        Kind::Router,
        Kind::FloatingIP,
    ];

    /// Holders of claims and users of a Network or Subnet before what they
    /// use, so each is released as soon as it goes: the order to delete in.
    pub const DELETION_ORDER: [Kind; 6] = [
        Kind::FloatingIP,
        Kind::Port,
        Kind::Router,
        Kind::Subnet,
        Kind::SecurityGroup,
        Kind::Network,
    ];

    /// The kind as the API spells it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Network => "Network",
            Kind::Subnet => "Subnet",
            Kind::Port => "Port",
            Kind::Router => "Router",
            Kind::FloatingIP => "FloatingIP",
            Kind::SecurityGroup => "SecurityGroup",
        }
    }

    /// The kind the API spells `name`.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Runs `$body` with `$k` standing for the API type of the kind `$kind`.
#[macro_export]
macro_rules! with_kind {
    ($kind:expr, $k:ident => $body:expr) => {
        match $kind {
            $crate::Kind::Network => {
                type $k = $crate::kinds::Network;
                $body
            }
            $crate::Kind::Subnet => {
                type $k = $crate::kinds::Subnet;
                $body
            }
            $crate::Kind::Port => {
                type $k = $crate::kinds::Port;
                $body
            }
            $crate::Kind::Router => {
                type $k = $crate::kinds::Router;
                $body
            }
            $crate::Kind::FloatingIP => {
                type $k = $crate::kinds::FloatingIP;
                $body
            }
            $crate::Kind::SecurityGroup => {
                type $k = $crate::kinds::SecurityGroup;
                $body
            }
        }
    };
}

/// Runs `$body` once per kind, with `$k` standing for its API type: in
/// [`Kind::ALL`]'s order, or in the order of the kinds `$order` yields.
#[macro_export]
macro_rules! for_each_kind {
    ($k:ident => $body:expr) => {
        $crate::for_each_kind!($crate::Kind::ALL, $k => $body)
    };
    ($order:expr, $k:ident => $body:expr) => {
        for kind in $order {
            $crate::with_kind!(kind, $k => $body)
        }
    };
}

/// An API type of one of the six kinds.
pub trait ApiObject:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + HasStatus<Status: ObjectStatus + Clone + PartialEq + Serialize + fmt::Debug>
    + Clone
    + PartialEq
    + fmt::Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    const KIND: Kind;
    /// Whether an agent realises it only once the controller has found it
    /// Ready; security groups are realised whole, since a namespace's
    /// implicit default group has no object to be Ready.
    const GATED: bool = true;

    /// What the resolution decides for one.
    type State: PartialEq;

    fn of(snapshot: &Snapshot) -> &BTreeMap<Key, Arc<Self>>;
    fn of_mut(snapshot: &mut Snapshot) -> &mut BTreeMap<Key, Arc<Self>>;
    fn verdicts(resolution: &Resolution) -> &BTreeMap<Key, Verdict<Self::State>>;
    fn into_object(self) -> Object;

    /// The status fields that show what was decided (`state`, None while
    /// not ready); conditions, generation and nodes are the caller's.
    fn allocated(
        key: &Key,
        object: &Self,
        state: Option<&Self::State>,
        resolution: &Resolution,
    ) -> Self::Status;

    /// Whether `status` shows `address` as held by this object.
    fn shows(_status: &Self::Status, _address: &str) -> bool {
        false
    }

    /// The status fields that depend on how far the nodes have come
    /// (`realised`, per object), beside `status.nodes`: a Port's services.
    fn with_progress(
        _key: &Key,
        _status: &mut Self::Status,
        _state: Option<&Self::State>,
        _resolution: &Resolution,
        _realised: &dyn Fn(&ObjectId) -> Option<NodeRealisation>,
    ) {
    }
}

impl ApiObject for Network {
    const KIND: Kind = Kind::Network;
    type State = NetworkState;

    fn of(snapshot: &Snapshot) -> &BTreeMap<Key, Arc<Self>> {
        &snapshot.networks
    }

    fn of_mut(snapshot: &mut Snapshot) -> &mut BTreeMap<Key, Arc<Self>> {
        &mut snapshot.networks
    }

    fn verdicts(resolution: &Resolution) -> &BTreeMap<Key, Verdict<Self::State>> {
        &resolution.networks
    }

    fn into_object(self) -> Object {
        Object::Network(self)
    }

    fn allocated(_: &Key, _: &Self, state: Option<&NetworkState>, _: &Resolution) -> NetworkStatus {
        NetworkStatus {
            segmentation_id: state.and_then(|s| s.segmentation_id),
            mtu: state.map(|s| s.mtu),
            ..NetworkStatus::default()
        }
    }
}

impl ApiObject for Subnet {
    const KIND: Kind = Kind::Subnet;
    type State = SubnetState;

    fn of(snapshot: &Snapshot) -> &BTreeMap<Key, Arc<Self>> {
        &snapshot.subnets
    }

    fn of_mut(snapshot: &mut Snapshot) -> &mut BTreeMap<Key, Arc<Self>> {
        &mut snapshot.subnets
    }

    fn verdicts(resolution: &Resolution) -> &BTreeMap<Key, Verdict<Self::State>> {
        &resolution.subnets
    }

    fn into_object(self) -> Object {
        Object::Subnet(self)
    }

    fn allocated(_: &Key, _: &Self, state: Option<&SubnetState>, _: &Resolution) -> SubnetStatus {
        let count = |n: u128| i64::try_from(n).unwrap_or(i64::MAX);
        SubnetStatus {
            gateway_ip: state.and_then(|s| s.gateway).map(|g| g.to_string()),
            dhcp_ip: state.and_then(|s| s.dhcp).map(|d| d.to_string()),
            used_addresses: state.map_or(0, |s| count(s.used)),
            free_addresses: state.map_or(0, |s| count(s.free)),
            ..SubnetStatus::default()
        }
    }

    fn shows(status: &SubnetStatus, address: &str) -> bool {
        status.dhcp_ip.as_deref() == Some(address)
    }
}

impl ApiObject for Port {
    const KIND: Kind = Kind::Port;
    type State = PortState;

    fn of(snapshot: &Snapshot) -> &BTreeMap<Key, Arc<Self>> {
        &snapshot.ports
    }

    fn of_mut(snapshot: &mut Snapshot) -> &mut BTreeMap<Key, Arc<Self>> {
        &mut snapshot.ports
    }

    fn verdicts(resolution: &Resolution) -> &BTreeMap<Key, Verdict<Self::State>> {
        &resolution.ports
    }

    fn into_object(self) -> Object {
        Object::Port(self)
    }

    fn allocated(key: &Key, _: &Self, state: Option<&PortState>, _: &Resolution) -> PortStatus {
        PortStatus {
            fixed_ips: state
                .map(|s| {
                    s.fixed_ips
                        .iter()
                        .map(|(subnet, ip)| AllocatedIP {
                            subnet: subnet.spelled_from(&key.namespace),
                            ip_address: ip.to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            mac_address: state.map(|s| s.mac.to_string()),
            mtu: state.map(|s| s.mtu),
            ..PortStatus::default()
        }
    }

    fn with_progress(
        key: &Key,
        status: &mut PortStatus,
        state: Option<&PortState>,
        resolution: &Resolution,
        realised: &dyn Fn(&ObjectId) -> Option<NodeRealisation>,
    ) {
        status.services =
            state.and_then(|s| crate::services::port_services(key, s, resolution, realised));
    }

    fn shows(status: &PortStatus, address: &str) -> bool {
        status.fixed_ips.iter().any(|f| f.ip_address == address)
    }
}

impl ApiObject for Router {
    const KIND: Kind = Kind::Router;
    type State = RouterState;

    fn of(snapshot: &Snapshot) -> &BTreeMap<Key, Arc<Self>> {
        &snapshot.routers
    }

    fn of_mut(snapshot: &mut Snapshot) -> &mut BTreeMap<Key, Arc<Self>> {
        &mut snapshot.routers
    }

    fn verdicts(resolution: &Resolution) -> &BTreeMap<Key, Verdict<Self::State>> {
        &resolution.routers
    }

    fn into_object(self) -> Object {
        Object::Router(self)
    }

    fn allocated(key: &Key, _: &Self, state: Option<&RouterState>, _: &Resolution) -> RouterStatus {
        RouterStatus {
            node: state.map(|s| s.node.clone()),
            external_gateway: state
                .and_then(|s| s.gateway.as_ref())
                .map(|g| RouterGatewayStatus {
                    network: g.leg.network.spelled_from(&key.namespace),
                    ip_address: g.leg.address.addr().to_string(),
                }),
            ..RouterStatus::default()
        }
    }

    fn shows(status: &RouterStatus, address: &str) -> bool {
        status
            .external_gateway
            .as_ref()
            .is_some_and(|g| g.ip_address == address)
    }
}

impl ApiObject for FloatingIP {
    const KIND: Kind = Kind::FloatingIP;
    type State = FloatingIpState;

    fn of(snapshot: &Snapshot) -> &BTreeMap<Key, Arc<Self>> {
        &snapshot.floating_ips
    }

    fn of_mut(snapshot: &mut Snapshot) -> &mut BTreeMap<Key, Arc<Self>> {
        &mut snapshot.floating_ips
    }

    fn verdicts(resolution: &Resolution) -> &BTreeMap<Key, Verdict<Self::State>> {
        &resolution.floating_ips
    }

    fn into_object(self) -> Object {
        Object::FloatingIP(self)
    }

    fn allocated(
        key: &Key,
        _: &Self,
        state: Option<&FloatingIpState>,
        _: &Resolution,
    ) -> FloatingIPStatus {
        let target = state.and_then(|s| s.target.as_ref());
        FloatingIPStatus {
            floating_ip_address: state.map(|s| s.address.to_string()),
            fixed_ip_address: target.map(|t| t.fixed.to_string()),
            router: target.map(|t| t.router.spelled_from(&key.namespace)),
            ..FloatingIPStatus::default()
        }
    }

    fn shows(status: &FloatingIPStatus, address: &str) -> bool {
        status.floating_ip_address.as_deref() == Some(address)
    }
}

impl ApiObject for SecurityGroup {
    const KIND: Kind = Kind::SecurityGroup;
    const GATED: bool = false;
    type State = SecurityGroupState;

    fn of(snapshot: &Snapshot) -> &BTreeMap<Key, Arc<Self>> {
        &snapshot.security_groups
    }

    fn of_mut(snapshot: &mut Snapshot) -> &mut BTreeMap<Key, Arc<Self>> {
        &mut snapshot.security_groups
    }

    fn verdicts(resolution: &Resolution) -> &BTreeMap<Key, Verdict<Self::State>> {
        &resolution.security_groups
    }

    fn into_object(self) -> Object {
        Object::SecurityGroup(self)
    }

    fn allocated(
        key: &Key,
        object: &Self,
        _: Option<&SecurityGroupState>,
        resolution: &Resolution,
    ) -> SecurityGroupStatus {
        let members = resolution.group_members.get(key).copied().unwrap_or(0);
        SecurityGroupStatus {
            rule_count: object.spec.rules.len() as i64,
            port_count: members as i64,
            ..SecurityGroupStatus::default()
        }
    }
}

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

/// Runs `$body` with `$o` bound to the object `$object` holds, whatever its kind.
macro_rules! with_object {
    ($object:expr, $o:ident => $body:expr) => {
        match $object {
            Object::Network($o) => $body,
            Object::Subnet($o) => $body,
            Object::Port($o) => $body,
            Object::Router($o) => $body,
            Object::FloatingIP($o) => $body,
            Object::SecurityGroup($o) => $body,
        }
    };
}

fn kind_of<K: ApiObject>(_: &K) -> Kind {
    K::KIND
}

/// An object's key; an object without a namespace is in `default`.
pub fn key_of<K: Resource>(object: &K) -> Key {
    Key::new(
        object.namespace().unwrap_or_else(|| "default".into()),
        object.name_any(),
    )
}

impl Object {
    pub fn kind(&self) -> Kind {
        with_object!(self, o => kind_of(o))
    }

    pub fn key(&self) -> Key {
        with_object!(self, o => key_of(o))
    }

    pub fn id(&self) -> ObjectId {
        ObjectId::new(self.kind(), self.key())
    }

    /// Adds the object to `snapshot`; one of the same kind and key there
    /// already is an error that hands the object back.
    pub(crate) fn insert_into(self, snapshot: &mut Snapshot) -> Result<(), Box<Object>> {
        fn put<K: ApiObject>(snapshot: &mut Snapshot, object: K) -> Result<(), Box<Object>> {
            let map = K::of_mut(snapshot);
            let key = key_of(&object);
            if map.contains_key(&key) {
                return Err(Box::new(object.into_object()));
            }
            map.insert(key, Arc::new(object));
            Ok(())
        }
        with_object!(self, o => put(snapshot, o))
    }
}
