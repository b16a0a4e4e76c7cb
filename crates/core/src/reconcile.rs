//! The difference between what a node's kernel has and what its plan wants,
//! as the smallest list of changes. Pure: the dataplane adapter reads the
//! kernel into an [`Observed`] and applies the [`Changes`].
//!
//! Only links whose alias starts with [`names::ALIAS_MARK`] are neutrino's.
//! Anything else is never changed or removed, with one exception the plan
//! asks for by name: the physical interface of a flat network, which is
//! attached to (and released from) neutrino's bridge.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::allocate::Mac;
use super::config::BRIDGE_LEARNED_MACS;
use super::names;
use super::plan::{FdbEntry, Neighbour, NodePlan, PortPlan, UplinkKind};

/// A link as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedLink {
    pub name: String,
    pub kind: ObservedKind,
    pub alias: Option<String>,
    pub master: Option<String>,
    pub mtu: u32,
    pub up: bool,
    /// The bridge port flag that keeps two isolated ports apart.
    pub isolated: bool,
    /// Whether the node's own IPv6 configures itself on the link: takes
    /// addresses and router advertisements from whatever it carries.
    pub host_ipv6: bool,
}

impl ObservedLink {
    pub fn is_ours(&self) -> bool {
        self.alias
            .as_deref()
            .is_some_and(|a| a.starts_with(names::ALIAS_MARK))
    }
}

/// The kind-specific part of an observed link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObservedKind {
    /// `learned_limit`: the most MACs it learns (0: no bound), where the
    /// kernel says.
    Bridge {
        learned_limit: Option<u32>,
    },
    Vxlan {
        vni: u32,
        local: Option<IpAddr>,
        port: u16,
        learning: bool,
        proxy: bool,
    },
    Vlan {
        id: u16,
        parent: Option<String>,
    },
    Veth,
    Other(String),
}

/// What the kernel has, as far as the reconciler cares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub links: Vec<ObservedLink>,
    pub fdb: Vec<FdbKey>,
    pub neighbours: Vec<NeighbourKey>,
}

impl Observed {
    /// The links named, their masters, and the entries of those.
    pub fn only(&self, names: &BTreeSet<String>) -> Observed {
        let mut chosen: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        for link in self.links.iter().filter(|l| names.contains(&l.name)) {
            chosen.extend(link.master.as_deref());
        }
        Observed {
            links: self
                .links
                .iter()
                .filter(|l| chosen.contains(l.name.as_str()))
                .cloned()
                .collect(),
            fdb: self
                .fdb
                .iter()
                .filter(|e| chosen.contains(e.device.as_str()))
                .cloned()
                .collect(),
            neighbours: self
                .neighbours
                .iter()
                .filter(|e| chosen.contains(e.device.as_str()))
                .cloned()
                .collect(),
        }
    }
}

/// A VXLAN forwarding entry by what identifies it in the kernel.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct FdbKey {
    pub device: String,
    pub mac: Mac,
    pub destination: IpAddr,
}

/// A static neighbour entry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct NeighbourKey {
    pub device: String,
    pub ip: IpAddr,
    pub mac: Mac,
}

/// What a desired link is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum LinkKind {
    Bridge,
    /// A VXLAN link: learning off, answering ARP/NDP from its neighbour table.
    Vxlan {
        vni: u32,
        local: IpAddr,
        port: u16,
    },
    Vlan {
        parent: String,
        id: u16,
    },
    /// A veth pair; the peer carries `peer_mac` and goes to `peer_netns`
    /// when one is named (else it waits for the workload to take it).
    Veth {
        peer: String,
        peer_mac: Mac,
        peer_netns: Option<String>,
    },
    /// An interface neutrino does not own but attaches to a bridge.
    Physical,
}

impl LinkKind {
    /// How a link made as this one reads back from the kernel; `None` for a
    /// physical interface, which neutrino does not make.
    pub fn as_observed(&self) -> Option<ObservedKind> {
        Some(match self {
            LinkKind::Bridge => ObservedKind::Bridge {
                learned_limit: Some(BRIDGE_LEARNED_MACS),
            },
            LinkKind::Vxlan { vni, local, port } => ObservedKind::Vxlan {
                vni: *vni,
                local: Some(*local),
                port: *port,
                learning: false,
                proxy: true,
            },
            LinkKind::Vlan { parent, id } => ObservedKind::Vlan {
                id: *id,
                parent: Some(parent.clone()),
            },
            LinkKind::Veth { .. } => ObservedKind::Veth,
            LinkKind::Physical => return None,
        })
    }
}

/// A link the plan wants in the node's namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DesiredLink {
    pub name: String,
    pub kind: LinkKind,
    pub alias: String,
    /// `None` for a physical interface, whose MTU is the operator's.
    pub mtu: Option<u32>,
    pub master: Option<String>,
    pub isolated: bool,
}

/// One change to links.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum LinkChange {
    /// Created with its MTU, attached to its master, up and marked as ours.
    Create(DesiredLink),
    Delete(String),
    SetMtu(String, u32),
    SetMaster(String, Option<String>),
    SetIsolated(String, bool),
    SetUp(String),
    /// Takes the node's IPv6 off the link: no addresses, no router
    /// advertisements, nothing delivered to the node through it. A VXLAN
    /// link (`proxy`) answers neighbour solicitations from its IPv6
    /// neighbour table, which needs IPv6 running: it keeps it, without
    /// addresses and without taking advertisements.
    NoHostIpv6 {
        name: String,
        proxy: bool,
    },
    /// Bounds the MACs a bridge learns.
    LimitLearning {
        name: String,
        limit: u32,
    },
}

impl LinkChange {
    /// The link the change is to.
    pub fn link(&self) -> &str {
        match self {
            LinkChange::Create(link) => &link.name,
            LinkChange::Delete(name)
            | LinkChange::SetMtu(name, _)
            | LinkChange::SetMaster(name, _)
            | LinkChange::SetIsolated(name, _)
            | LinkChange::SetUp(name)
            | LinkChange::NoHostIpv6 { name, .. }
            | LinkChange::LimitLearning { name, .. } => name,
        }
    }
}

/// Everything to change, in the order it must be applied: links (removals
/// first, then creations, then settings), then FDB and neighbour entries
/// (removals first).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    pub links: Vec<LinkChange>,
    pub fdb_remove: Vec<FdbKey>,
    pub fdb_add: Vec<FdbKey>,
    pub neighbours_remove: Vec<NeighbourKey>,
    pub neighbours_add: Vec<NeighbourKey>,
    /// Links the plan wants whose names are taken by something that is not
    /// neutrino's, or physical interfaces that are missing: left alone.
    pub conflicts: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
            && self.fdb_remove.is_empty()
            && self.fdb_add.is_empty()
            && self.neighbours_remove.is_empty()
            && self.neighbours_add.is_empty()
    }

    /// The namespaces that a created veth puts its peer into: what is set
    /// up inside them must be set up again on the new interface.
    pub fn namespaces_given_links(&self) -> BTreeSet<String> {
        self.links
            .iter()
            .filter_map(|change| match change {
                LinkChange::Create(DesiredLink {
                    kind:
                        LinkKind::Veth {
                            peer_netns: Some(namespace),
                            ..
                        },
                    ..
                }) => Some(namespace.clone()),
                _ => None,
            })
            .collect()
    }

    /// How many kernel writes applying these takes.
    pub fn writes(&self) -> usize {
        self.links.len()
            + self.fdb_remove.len()
            + self.fdb_add.len()
            + self.neighbours_remove.len()
            + self.neighbours_add.len()
    }
}

/// A port's veth pair onto its network's bridge.
pub fn port_link(port: &PortPlan) -> DesiredLink {
    DesiredLink {
        name: port.interface.clone(),
        kind: LinkKind::Veth {
            peer: port.peer.clone(),
            peer_mac: port.mac,
            peer_netns: port.peer_netns.clone(),
        },
        alias: names::alias(&format!("port {}", port.port)),
        mtu: Some(port.mtu),
        master: Some(port.bridge.clone()),
        isolated: false,
    }
}

/// The links a plan wants in the node's own namespace, bridges first.
pub fn desired_links(plan: &NodePlan) -> Vec<DesiredLink> {
    desired_links_among(plan, None)
}

/// Those of the links a plan wants that `only` names (all when `None`).
fn desired_links_among(plan: &NodePlan, only: Option<&BTreeSet<String>>) -> Vec<DesiredLink> {
    let keep = |name: &String| only.is_none_or(|names| names.contains(name));
    let mut links = Vec::new();
    for bridge in plan.bridges.iter().filter(|b| keep(&b.name)) {
        links.push(DesiredLink {
            name: bridge.name.clone(),
            kind: LinkKind::Bridge,
            alias: names::alias(&format!("bridge of network {}", bridge.network)),
            mtu: Some(bridge.mtu),
            master: None,
            isolated: false,
        });
    }
    // Uplinks and DHCP ports are isolated from each other, so each node's
    // DHCP servers (one MAC and address on every node) answer only locally.
    for uplink in plan.uplinks.iter().filter(|u| keep(&u.name)) {
        let (kind, mtu) = match &uplink.kind {
            UplinkKind::Vxlan { vni, local, port } => (
                LinkKind::Vxlan {
                    vni: *vni,
                    local: *local,
                    port: *port,
                },
                Some(uplink.mtu),
            ),
            UplinkKind::Vlan { parent, id } => (
                LinkKind::Vlan {
                    parent: parent.clone(),
                    id: *id,
                },
                Some(uplink.mtu),
            ),
            UplinkKind::Flat { .. } => (LinkKind::Physical, None),
        };
        links.push(DesiredLink {
            name: uplink.name.clone(),
            kind,
            alias: names::alias(&format!("uplink of {}", uplink.bridge)),
            mtu,
            master: Some(uplink.bridge.clone()),
            isolated: true,
        });
    }
    for port in plan.ports.iter().filter(|p| keep(&p.interface)) {
        links.push(port_link(port));
    }
    for dhcp in plan.dhcp.iter().filter(|d| keep(&d.bridge_port)) {
        links.push(DesiredLink {
            name: dhcp.bridge_port.clone(),
            kind: LinkKind::Veth {
                peer: dhcp.interface.clone(),
                peer_mac: dhcp.mac,
                peer_netns: Some(dhcp.namespace.clone()),
            },
            alias: names::alias(&format!("DHCP of subnet {}", dhcp.subnet)),
            mtu: Some(dhcp.mtu),
            master: Some(dhcp.bridge.clone()),
            isolated: true,
        });
    }
    for router in &plan.routers {
        for leg in router
            .interfaces
            .iter()
            .chain(&router.gateway)
            .filter(|l| keep(&l.bridge_port))
        {
            links.push(DesiredLink {
                name: leg.bridge_port.clone(),
                kind: LinkKind::Veth {
                    peer: leg.interface.clone(),
                    peer_mac: leg.mac,
                    peer_netns: Some(router.namespace.clone()),
                },
                alias: names::alias(&format!("router {} on {}", router.router, leg.subnet)),
                mtu: Some(leg.mtu),
                master: Some(leg.bridge.clone()),
                isolated: false,
            });
        }
    }
    links
}

/// Whether an observed link is what `desired` asks for, as far as what
/// cannot be changed in place goes.
fn same_kind(observed: &ObservedKind, desired: &LinkKind) -> bool {
    match (observed, desired) {
        (ObservedKind::Bridge { .. }, LinkKind::Bridge) => true,
        (
            ObservedKind::Vxlan {
                vni,
                local,
                port,
                learning,
                proxy,
            },
            LinkKind::Vxlan {
                vni: v,
                local: l,
                port: p,
            },
        ) => vni == v && *local == Some(*l) && port == p && !learning && *proxy,
        (ObservedKind::Vlan { id, parent }, LinkKind::Vlan { parent: p, id: i }) => {
            id == i && parent.as_deref() == Some(p.as_str())
        }
        (ObservedKind::Veth, LinkKind::Veth { .. }) => true,
        _ => false,
    }
}

/// Settings that can change in place: MTU, master, isolation, up, the
/// node's IPv6. A link just created (`observed` is `None`) already has its
/// MTU and master, no IPv6, and is up.
fn settings(observed: Option<&ObservedLink>, desired: &DesiredLink, out: &mut Vec<LinkChange>) {
    let name = &desired.name;
    let isolating = desired.master.is_some();
    match observed {
        // Created attached to its master and up; isolation is a bridge-port
        // setting that only exists once it is attached.
        None => {
            if isolating && desired.isolated {
                out.push(LinkChange::SetIsolated(name.clone(), true));
            }
        }
        Some(found) => {
            if let Some(mtu) = desired.mtu.filter(|m| *m != found.mtu) {
                out.push(LinkChange::SetMtu(name.clone(), mtu));
            }
            if found.master != desired.master {
                out.push(LinkChange::SetMaster(name.clone(), desired.master.clone()));
            }
            if isolating && found.isolated != desired.isolated {
                out.push(LinkChange::SetIsolated(name.clone(), desired.isolated));
            }
            // Tenant links are no way into the node, whatever the host's
            // sysctls: a physical uplink stays the operator's.
            if found.host_ipv6 && desired.kind != LinkKind::Physical {
                out.push(LinkChange::NoHostIpv6 {
                    name: name.clone(),
                    proxy: matches!(desired.kind, LinkKind::Vxlan { .. }),
                });
            }
            // A kernel that does not report the bound does not have it.
            if let ObservedKind::Bridge {
                learned_limit: Some(limit),
            } = found.kind
                && limit != BRIDGE_LEARNED_MACS
            {
                out.push(LinkChange::LimitLearning {
                    name: name.clone(),
                    limit: BRIDGE_LEARNED_MACS,
                });
            }
            if !found.up {
                out.push(LinkChange::SetUp(name.clone()));
            }
        }
    }
}

/// The smallest set of changes that takes `observed` to `plan`.
pub fn diff(observed: &Observed, plan: &NodePlan) -> Changes {
    diff_among(observed, plan, None)
}

/// The same, for the links `only` names and their entries: what else the
/// kernel and the plan hold is taken to agree already (see
/// [`crate::delta::affected`]). `observed` holds at least those links and
/// their masters.
pub fn diff_only(observed: &Observed, plan: &NodePlan, only: &BTreeSet<String>) -> Changes {
    diff_among(observed, plan, Some(only))
}

fn diff_among(observed: &Observed, plan: &NodePlan, only: Option<&BTreeSet<String>>) -> Changes {
    let keep = |name: &str| only.is_none_or(|names| names.contains(name));
    let desired = desired_links_among(plan, only);
    let by_name: BTreeMap<&str, &ObservedLink> = observed
        .links
        .iter()
        .map(|l| (l.name.as_str(), l))
        .collect();
    let wanted: BTreeSet<&str> = desired
        .iter()
        .map(|d| d.name.as_str())
        .chain(desired.iter().filter_map(|d| match &d.kind {
            // A port's peer may still wait in this namespace for its workload.
            LinkKind::Veth {
                peer,
                peer_netns: None,
                ..
            } => Some(peer.as_str()),
            _ => None,
        }))
        .collect();
    let our_bridges: BTreeSet<&str> = observed
        .links
        .iter()
        .filter(|l| l.is_ours() && matches!(l.kind, ObservedKind::Bridge { .. }))
        .map(|l| l.name.as_str())
        .collect();

    let mut changes = Changes::default();
    let mut removals = Vec::new();
    let mut creations = Vec::new();
    let mut updates = Vec::new();
    for link in &observed.links {
        if wanted.contains(link.name.as_str()) || !keep(&link.name) {
            continue;
        }
        if link.is_ours() {
            removals.push(LinkChange::Delete(link.name.clone()));
        } else if let Some(master) = link.master.as_deref().filter(|m| our_bridges.contains(m)) {
            // A physical interface whose flat network is gone: hand it back,
            // unless its bridge goes too, which releases it (and its port
            // flags) by itself; a port flag set after that fails.
            if wanted.contains(master) {
                updates.push(LinkChange::SetIsolated(link.name.clone(), false));
                updates.push(LinkChange::SetMaster(link.name.clone(), None));
            }
        }
    }
    for link in &desired {
        match (by_name.get(link.name.as_str()), &link.kind) {
            (None, LinkKind::Physical) => changes.conflicts.push(format!(
                "interface {} is missing; its bridge {} has no uplink",
                link.name,
                link.master.as_deref().unwrap_or("-")
            )),
            (None, _) => {
                creations.push(LinkChange::Create(link.clone()));
                settings(None, link, &mut updates);
            }
            (Some(found), LinkKind::Physical) => settings(Some(found), link, &mut updates),
            (Some(found), _) if !found.is_ours() => changes.conflicts.push(format!(
                "a link named {} exists and is not neutrino's; left alone",
                link.name
            )),
            (Some(found), kind) if !same_kind(&found.kind, kind) => {
                removals.push(LinkChange::Delete(link.name.clone()));
                creations.push(LinkChange::Create(link.clone()));
                settings(None, link, &mut updates);
            }
            (Some(found), _) => settings(Some(found), link, &mut updates),
        }
    }
    let deleted: BTreeSet<String> = removals
        .iter()
        .filter_map(|c| match c {
            LinkChange::Delete(name) => Some(name.clone()),
            _ => None,
        })
        .collect();
    changes.links = removals
        .into_iter()
        .chain(creations)
        .chain(updates)
        .collect();

    // FDB and neighbour entries live on neutrino's VXLAN links only, and go
    // with a link that is deleted (or recreated, which starts empty).
    let ours = |device: &str| {
        keep(device)
            && by_name
                .get(device)
                .is_some_and(|l| l.is_ours() && matches!(l.kind, ObservedKind::Vxlan { .. }))
            && !deleted.contains(device)
    };
    let have_fdb: BTreeSet<FdbKey> = observed
        .fdb
        .iter()
        .filter(|e| ours(&e.device))
        .cloned()
        .collect();
    let want_fdb: BTreeSet<FdbKey> = plan
        .fdb
        .iter()
        .filter(|e| keep(&e.device))
        .map(fdb_key)
        .collect();
    changes.fdb_remove = have_fdb.difference(&want_fdb).cloned().collect();
    changes.fdb_add = want_fdb.difference(&have_fdb).cloned().collect();
    let have_neigh: BTreeSet<NeighbourKey> = observed
        .neighbours
        .iter()
        .filter(|e| ours(&e.device))
        .cloned()
        .collect();
    let want_neigh: BTreeSet<NeighbourKey> = plan
        .neighbours
        .iter()
        .filter(|e| keep(&e.device))
        .map(neighbour_key)
        .collect();
    changes.neighbours_remove = have_neigh.difference(&want_neigh).cloned().collect();
    changes.neighbours_add = want_neigh.difference(&have_neigh).cloned().collect();
    changes
}

pub(crate) fn fdb_key(entry: &FdbEntry) -> FdbKey {
    FdbKey {
        device: entry.device.clone(),
        mac: entry.mac,
        destination: entry.destination,
    }
}

pub(crate) fn neighbour_key(entry: &Neighbour) -> NeighbourKey {
    NeighbourKey {
        device: entry.device.clone(),
        ip: entry.ip,
        mac: entry.mac,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{after, quickstart_plan};

    fn foreign(name: &str, kind: ObservedKind) -> ObservedLink {
        ObservedLink {
            name: name.into(),
            kind,
            alias: None,
            master: None,
            mtu: 1500,
            up: true,
            isolated: false,
            host_ipv6: true,
        }
    }

    #[test]
    fn an_empty_node_gets_everything_then_nothing() {
        let plan = quickstart_plan("node-1");
        let changes = diff(&Observed::default(), &plan);
        let created = changes
            .links
            .iter()
            .filter(|c| matches!(c, LinkChange::Create(_)))
            .count();
        assert_eq!(
            created, 4,
            "bridge, vxlan, port veth, DHCP veth: {changes:#?}"
        );
        assert_eq!(changes.fdb_add.len(), 2);
        assert_eq!(changes.neighbours_add.len(), 1);
        let converged = after(&Observed::default(), &plan);
        assert!(
            diff(&converged, &plan).is_empty(),
            "{:#?}",
            diff(&converged, &plan)
        );
    }

    #[test]
    fn links_that_took_the_nodes_ipv6_give_it_up() {
        let plan = quickstart_plan("node-1");
        let mut observed = after(&Observed::default(), &plan);
        for link in &mut observed.links {
            link.host_ipv6 = true;
        }
        let changes = diff(&observed, &plan);
        let disabled: BTreeSet<&str> = (changes.links.iter())
            .filter_map(|c| match c {
                LinkChange::NoHostIpv6 { name, proxy } => {
                    let vxlan = observed
                        .links
                        .iter()
                        .any(|l| &l.name == name && matches!(l.kind, ObservedKind::Vxlan { .. }));
                    assert_eq!(*proxy, vxlan, "{name}");
                    Some(name.as_str())
                }
                _ => None,
            })
            .collect();
        let ours: BTreeSet<&str> = (observed.links.iter())
            .filter(|l| l.is_ours())
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(disabled, ours, "{changes:#?}");
        assert_eq!(changes.links.len(), ours.len(), "{changes:#?}");
    }

    #[test]
    fn foreign_links_are_never_touched() {
        let plan = quickstart_plan("node-1");
        let mut observed = after(&Observed::default(), &plan);
        observed.links.push(foreign(
            "br-foreign",
            ObservedKind::Bridge {
                learned_limit: None,
            },
        ));
        observed
            .links
            .push(foreign("veth-foreign", ObservedKind::Veth));
        let bridge = plan.bridges[0].name.clone();
        let mut clash = foreign(
            &bridge,
            ObservedKind::Bridge {
                learned_limit: None,
            },
        );
        clash.mtu = 9000;
        observed.links.retain(|l| l.name != bridge);
        observed.links.push(clash);
        let changes = diff(&observed, &plan);
        let touched: Vec<String> = changes.links.iter().map(|c| format!("{c:?}")).collect();
        assert!(
            touched
                .iter()
                .all(|t| !t.contains("foreign") && !t.contains(&bridge)),
            "{touched:#?}"
        );
        assert_eq!(changes.conflicts.len(), 1, "{:?}", changes.conflicts);
    }

    #[test]
    fn a_bridge_without_the_learning_bound_gets_it_and_an_old_kernel_is_left() {
        let plan = quickstart_plan("node-1");
        let mut observed = after(&Observed::default(), &plan);
        let bridge = (observed.links.iter_mut())
            .find(|l| matches!(l.kind, ObservedKind::Bridge { .. }))
            .unwrap();
        bridge.kind = ObservedKind::Bridge {
            learned_limit: Some(0),
        };
        let name = bridge.name.clone();
        assert_eq!(
            diff(&observed, &plan).links,
            [LinkChange::LimitLearning {
                name,
                limit: BRIDGE_LEARNED_MACS
            }]
        );
        for link in &mut observed.links {
            if let ObservedKind::Bridge { learned_limit } = &mut link.kind {
                *learned_limit = None;
            }
        }
        assert!(diff(&observed, &plan).is_empty());
    }

    #[test]
    fn an_uplink_is_handed_back_once_only() {
        let mut observed = after(&Observed::default(), &quickstart_plan("node-1"));
        let bridge = observed
            .links
            .iter()
            .find(|l| matches!(l.kind, ObservedKind::Bridge { .. }))
            .unwrap()
            .name
            .clone();
        let mut uplink = foreign("eth2", ObservedKind::Other("device".into()));
        uplink.master = Some(bridge.clone());
        uplink.isolated = true;
        observed.links.push(uplink);
        // The bridge goes: deleting it releases the uplink.
        let gone = diff(&observed, &quickstart_plan("node-3"));
        assert!(gone.links.contains(&LinkChange::Delete(bridge.clone())));
        assert!(
            !gone.links.iter().any(|c| format!("{c:?}").contains("eth2")),
            "{:#?}",
            gone.links
        );
        // The bridge stays: the uplink is taken off it.
        let stays = diff(&observed, &quickstart_plan("node-1"));
        assert_eq!(
            stays.links,
            [
                LinkChange::SetIsolated("eth2".into(), false),
                LinkChange::SetMaster("eth2".into(), None)
            ]
        );
    }

    #[test]
    fn a_dropped_plan_removes_only_what_is_ours() {
        let plan = quickstart_plan("node-1");
        let mut observed = after(&Observed::default(), &plan);
        observed
            .links
            .push(foreign("eth0", ObservedKind::Other("device".into())));
        let empty = quickstart_plan("node-3");
        let changes = diff(&observed, &empty);
        let deleted: BTreeSet<String> = changes
            .links
            .iter()
            .filter_map(|c| match c {
                LinkChange::Delete(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        let ours: BTreeSet<String> = desired_links(&plan).into_iter().map(|d| d.name).collect();
        assert_eq!(deleted, ours);
        assert!(
            changes.fdb_add.is_empty() && changes.fdb_remove.is_empty(),
            "entries go with their link"
        );
    }

    #[test]
    fn a_changed_vni_recreates_the_link_and_its_entries() {
        let plan = quickstart_plan("node-1");
        let mut observed = after(&Observed::default(), &plan);
        for link in &mut observed.links {
            if let ObservedKind::Vxlan { vni, .. } = &mut link.kind {
                *vni += 1;
            }
        }
        let changes = diff(&observed, &plan);
        let vxlan = plan.uplinks[0].name.clone();
        assert!(changes.links.contains(&LinkChange::Delete(vxlan.clone())));
        assert_eq!(
            changes.fdb_add.len(),
            2,
            "the new link needs its entries again"
        );
    }

    #[test]
    fn mtu_and_missing_entries_are_fixed_in_place() {
        let plan = quickstart_plan("node-1");
        let mut observed = after(&Observed::default(), &plan);
        observed.links[0].mtu = 1400;
        observed.links[0].up = false;
        let stale = FdbKey {
            device: plan.uplinks[0].name.clone(),
            mac: Mac([2, 0, 0, 0, 0, 9]),
            destination: "198.18.0.9".parse().unwrap(),
        };
        observed.fdb.push(stale.clone());
        observed.fdb.remove(0);
        let changes = diff(&observed, &plan);
        let name = observed.links[0].name.clone();
        assert_eq!(
            changes.links,
            vec![
                LinkChange::SetMtu(name.clone(), plan.bridges[0].mtu),
                LinkChange::SetUp(name)
            ]
        );
        assert_eq!(changes.fdb_remove, vec![stale]);
        assert_eq!(changes.fdb_add.len(), 1);
    }
}
