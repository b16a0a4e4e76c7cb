//! The claims that exist on a cluster, indexed for the resolve pass: an
//! address or segment claimed by an object is that object's before anything
//! else, and no one else's.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::allocate::Holder;
use crate::{Key, Kind, ObjectId, Snapshot};
use neutrino_api::ClaimHolder;

/// A segment as a claim names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Segment {
    Vxlan(u32),
    Vlan(String, u32),
    Flat(String),
}

impl Segment {
    /// The claim's name: `vxlan.<vni>`, `vlan.<physnet>.<id>`, `flat.<physnet>`.
    pub fn name(&self) -> String {
        match self {
            Self::Vxlan(vni) => format!("vxlan.{vni}"),
            Self::Vlan(physnet, id) => format!("vlan.{physnet}.{id}"),
            Self::Flat(physnet) => format!("flat.{physnet}"),
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        let parts: Vec<&str> = name.split('.').collect();
        match parts[..] {
            ["vxlan", vni] => Some(Self::Vxlan(vni.parse().ok()?)),
            ["vlan", physnet, id] => Some(Self::Vlan(physnet.into(), id.parse().ok()?)),
            ["flat", physnet] => Some(Self::Flat(physnet.into())),
            _ => None,
        }
    }
}

/// The holder a claim names, as the address book knows holders.
pub fn held_by(claim: &ClaimHolder) -> Option<Holder> {
    let kind = Kind::parse(&claim.kind)?;
    let key = Key::new(claim.namespace.clone(), claim.name.clone());
    Holder::claimed_by(ObjectId::new(kind, key))
}

/// How a holder is written in a claim.
pub fn claim_holder(holder: &Holder) -> Option<ClaimHolder> {
    if !holder.claimable() {
        return None;
    }
    let ObjectId { kind, key } = holder.object();
    Some(ClaimHolder {
        kind: kind.name().into(),
        namespace: key.namespace,
        name: key.name,
    })
}

/// Every claim, by what it holds.
#[derive(Debug, Default)]
pub struct ClaimIndex {
    /// (subnet, address, holder), in claim-name order.
    pub addresses: Vec<(Key, IpAddr, Holder)>,
    /// Segment → the network holding it.
    pub segments: BTreeMap<Segment, Key>,
    /// Each holder's claims, as positions in `addresses`: looked up once
    /// per object, so not found by a scan of every claim.
    by_holder: BTreeMap<Holder, Vec<usize>>,
    /// Each network's segment (the first, should it hold several).
    by_network: BTreeMap<Key, Segment>,
}

impl ClaimIndex {
    pub fn new(snapshot: &Snapshot) -> Self {
        let addresses: Vec<(Key, IpAddr, Holder)> = snapshot
            .ip_claims
            .iter()
            .filter_map(|(key, claim)| {
                let address = claim.spec.address.parse().ok()?;
                let subnet = Key::new(key.namespace.clone(), claim.spec.subnet.clone());
                Some((subnet, address, held_by(&claim.spec.holder)?))
            })
            .collect();
        let segments: BTreeMap<Segment, Key> = snapshot
            .segment_claims
            .iter()
            .filter_map(|(name, claim)| {
                let network = &claim.spec.network;
                Some((
                    Segment::parse(name)?,
                    Key::new(network.namespace.clone(), network.name.clone()),
                ))
            })
            .collect();
        let mut by_holder: BTreeMap<Holder, Vec<usize>> = BTreeMap::new();
        for (i, (_, _, holder)) in addresses.iter().enumerate() {
            by_holder.entry(holder.clone()).or_default().push(i);
        }
        let mut by_network = BTreeMap::new();
        for (segment, network) in &segments {
            by_network
                .entry(network.clone())
                .or_insert_with(|| segment.clone());
        }
        Self {
            addresses,
            segments,
            by_holder,
            by_network,
        }
    }

    /// The addresses `holder` has claimed, as (subnet, address), in
    /// claim-name order.
    pub fn addresses_of<'a>(
        &'a self,
        holder: &'a Holder,
    ) -> impl Iterator<Item = (Key, IpAddr)> + 'a {
        self.by_holder.get(holder).into_iter().flatten().map(|&i| {
            let (subnet, address, _) = &self.addresses[i];
            (subnet.clone(), *address)
        })
    }

    /// The segment `network` has claimed.
    pub fn segment_of(&self, network: &Key) -> Option<&Segment> {
        self.by_network.get(network)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        for (segment, name) in [
            (Segment::Vxlan(1001), "vxlan.1001"),
            (Segment::Vlan("physnet1".into(), 101), "vlan.physnet1.101"),
            (Segment::Flat("extnet".into()), "flat.extnet"),
        ] {
            assert_eq!(segment.name(), name);
            assert_eq!(Segment::parse(name), Some(segment));
        }
        assert_eq!(Segment::parse("vxlan.x"), None);
    }
}
