//! The node's links, FDB and neighbour entries as the kernel last reported
//! them: filled by one dump, then kept current from the kernel's own
//! notifications, so that an apply reads memory instead of dumping
//! thousands of links and entries for a change of two.
//!
//! The notifications wait in a socket that is read only when the agent
//! looks. The kernel queues a write's notification before it acknowledges
//! the write, so every write acknowledged before a read is in the view
//! after it. A socket that overflowed has lost notifications: the view is
//! then dumped afresh, as it is once per drift interval besides.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::IpAddr;
use std::os::fd::AsFd;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, InfoBridge, InfoBridgePort, InfoData, InfoKind, InfoPortData,
    InfoVlan, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, protocols::NETLINK_ROUTE};

use neutrino_core::allocate::Mac;
use neutrino_core::reconcile::{FdbKey, NeighbourKey, Observed, ObservedKind, ObservedLink};

/// The multicast groups of link and neighbour (and FDB) changes.
const RTNLGRP_LINK: u32 = 1;
const RTNLGRP_NEIGH: u32 = 3;

/// Room for the notifications of a burst of changes between two reads (the
/// kernel counts each queued message at about a kilobyte). A cold build
/// overflows it, and is followed by a dump.
const QUEUE_BYTES: usize = 16 << 20;

/// A link as read from one message; its master and VLAN parent as indexes,
/// named when the view is read, since they may arrive in any order.
#[derive(Clone, Debug, PartialEq, Eq)]
struct LinkRecord {
    name: String,
    kind: ObservedKind,
    alias: Option<String>,
    master: Option<u32>,
    parent: Option<u32>,
    mtu: u32,
    up: bool,
    isolated: bool,
    host_ipv6: bool,
}

/// Links by index; each device's FDB destinations by MAC and permanent
/// neighbours by address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelView {
    links: HashMap<u32, LinkRecord>,
    by_name: HashMap<String, u32>,
    fdb: HashMap<u32, HashMap<Mac, BTreeSet<IpAddr>>>,
    neighbours: HashMap<u32, HashMap<IpAddr, Mac>>,
}

impl KernelView {
    /// A view of what a dump returned.
    pub fn from_dump(
        links: &[LinkMessage],
        fdb: &[NeighbourMessage],
        neighbours: &[NeighbourMessage],
    ) -> Self {
        let mut view = KernelView::default();
        for message in links {
            view.link(message);
        }
        // A dump lists every destination of a MAC, where a notification
        // stands for the MAC's only one (see `entry`).
        for message in fdb {
            if let Some((mac, ip)) = mac_and_ip(message) {
                view.fdb
                    .entry(message.header.ifindex)
                    .or_default()
                    .entry(mac)
                    .or_default()
                    .insert(ip);
            }
        }
        for message in neighbours {
            view.entry(message, true);
        }
        view
    }

    /// A link as a new-link message of the address families tells it.
    pub fn link(&mut self, message: &LinkMessage) {
        let index = message.header.index;
        if let Some(record) = link_record(message) {
            self.by_name.insert(record.name.clone(), index);
            if let Some(old) = self.links.insert(index, record)
                && self.links[&index].name != old.name
            {
                self.by_name.remove(&old.name);
            }
        }
    }

    /// A link that left the namespace, with what lived on it.
    pub fn link_gone(&mut self, index: u32) {
        if let Some(old) = self.links.remove(&index) {
            self.by_name.remove(&old.name);
        }
        self.fdb.remove(&index);
        self.neighbours.remove(&index);
    }

    /// The name of the link `index`, and of its master.
    pub fn names_of(&self, index: u32) -> impl Iterator<Item = &str> {
        let link = self.links.get(&index);
        let master = link.and_then(|l| self.links.get(&l.master?));
        link.into_iter().chain(master).map(|l| l.name.as_str())
    }

    /// An FDB entry (bridge family) or a neighbour added or removed. A
    /// neighbour counts only while permanent. A unicast MAC's FDB entry has
    /// one destination (the agent replaces it, and a replace is told as a
    /// new entry only); the all-zero MAC's has one per peer (appended).
    pub fn entry(&mut self, message: &NeighbourMessage, present: bool) {
        let device = message.header.ifindex;
        // A neighbour that goes (or fails) may be told without its MAC.
        let Some((mac, ip)) = mac_and_ip(message) else {
            if message.header.family != AddressFamily::Bridge
                && let Some(ip) = destination(message)
                && let Some(entries) = self.neighbours.get_mut(&device)
            {
                entries.remove(&ip);
            }
            return;
        };
        if message.header.family == AddressFamily::Bridge {
            let macs = self.fdb.entry(device).or_default();
            let destinations = macs.entry(mac).or_default();
            match (present, mac == Mac::ZERO) {
                (true, true) => {
                    destinations.insert(ip);
                }
                (true, false) => *destinations = BTreeSet::from([ip]),
                (false, _) => {
                    destinations.remove(&ip);
                }
            }
            if destinations.is_empty() {
                macs.remove(&mac);
            }
        } else if present && message.header.state == NeighbourState::Permanent {
            self.neighbours.entry(device).or_default().insert(ip, mac);
        } else if let Some(entries) = self.neighbours.get_mut(&device) {
            entries.remove(&ip);
        }
    }

    /// Folds one notification in, adding to `touched` the names of the
    /// links it is about (and of their masters), before and after; the
    /// index of a link to read again, when the notification does not carry
    /// its whole state.
    pub fn fold(
        &mut self,
        message: RouteNetlinkMessage,
        touched: &mut BTreeSet<String>,
    ) -> Option<u32> {
        let index = match &message {
            RouteNetlinkMessage::NewLink(m) | RouteNetlinkMessage::DelLink(m) => m.header.index,
            RouteNetlinkMessage::NewNeighbour(m) | RouteNetlinkMessage::DelNeighbour(m) => {
                m.header.ifindex
            }
            _ => return None,
        };
        touched.extend(self.names_of(index).map(str::to_string));
        let refetch = match message {
            // The bridge family tells a port's bridge settings, or that it
            // left its bridge (not the namespace): read the link again.
            RouteNetlinkMessage::NewLink(m) | RouteNetlinkMessage::DelLink(m)
                if m.header.interface_family == AddressFamily::Bridge =>
            {
                return Some(m.header.index);
            }
            RouteNetlinkMessage::NewLink(m) => {
                self.link(&m);
                None
            }
            RouteNetlinkMessage::DelLink(m) => {
                self.link_gone(m.header.index);
                None
            }
            RouteNetlinkMessage::NewNeighbour(m) => {
                self.entry(&m, true);
                None
            }
            RouteNetlinkMessage::DelNeighbour(m) => {
                self.entry(&m, false);
                None
            }
            _ => None,
        };
        touched.extend(self.names_of(index).map(str::to_string));
        refetch
    }

    /// Link indexes by name.
    pub fn indexes(&self) -> &HashMap<String, u32> {
        &self.by_name
    }

    /// The index of the link `name`.
    pub fn index(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    /// What the reconciler compares with the plan: every link and the
    /// entries of the VXLAN links; or, with `only`, the links it names,
    /// their masters, and the entries of those.
    pub fn observed(&self, only: Option<&BTreeSet<String>>) -> Observed {
        let name =
            |index: &Option<u32>| index.and_then(|i| self.links.get(&i).map(|l| l.name.clone()));
        let chosen: Vec<(u32, &LinkRecord)> = match only {
            None => self.links.iter().map(|(i, l)| (*i, l)).collect(),
            Some(names) => {
                let mut indexes: BTreeSet<u32> = BTreeSet::new();
                for index in names.iter().filter_map(|n| self.index(n)) {
                    indexes.insert(index);
                    indexes.extend(self.links[&index].master);
                }
                indexes.into_iter().map(|i| (i, &self.links[&i])).collect()
            }
        };
        let mut links = Vec::with_capacity(chosen.len());
        let mut vxlans: HashMap<u32, &str> = HashMap::new();
        for (index, record) in chosen {
            let mut kind = record.kind.clone();
            if let ObservedKind::Vlan { parent, .. } = &mut kind {
                *parent = name(&record.parent);
            }
            if matches!(kind, ObservedKind::Vxlan { .. }) {
                vxlans.insert(index, &record.name);
            }
            links.push(ObservedLink {
                name: record.name.clone(),
                kind,
                alias: record.alias.clone(),
                master: name(&record.master),
                mtu: record.mtu,
                up: record.up,
                isolated: record.isolated,
                host_ipv6: record.host_ipv6,
            });
        }
        links.sort_by(|a, b| a.name.cmp(&b.name));
        let mut fdb = Vec::new();
        let mut neighbours = Vec::new();
        for (index, device) in &vxlans {
            for (mac, destinations) in self.fdb.get(index).into_iter().flatten() {
                fdb.extend(destinations.iter().map(|destination| FdbKey {
                    device: device.to_string(),
                    mac: *mac,
                    destination: *destination,
                }));
            }
            for (ip, mac) in self.neighbours.get(index).into_iter().flatten() {
                neighbours.push(NeighbourKey {
                    device: device.to_string(),
                    ip: *ip,
                    mac: *mac,
                });
            }
        }
        fdb.sort();
        neighbours.sort();
        Observed {
            links,
            fdb,
            neighbours,
        }
    }
}

/// A socket that the kernel's link and neighbour notifications queue in,
/// opened in the namespace of the thread that calls [`Subscription::open`].
pub struct Subscription {
    socket: Socket,
    buffer: Vec<u8>,
}

/// What reading the queued notifications found.
#[derive(Debug, Default)]
pub struct Drained {
    /// Some were lost: the queue overflowed, or one could not be read.
    pub lost: bool,
    /// Links whose whole state must be read again.
    pub refetch: BTreeSet<u32>,
    /// The links the notifications were about, and their masters.
    pub touched: BTreeSet<String>,
}

impl Subscription {
    pub fn open() -> io::Result<Subscription> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.add_membership(RTNLGRP_LINK)?;
        socket.add_membership(RTNLGRP_NEIGH)?;
        socket.set_non_blocking(true)?;
        // Past the system's default limit, which only root may do; without
        // it the queue is smaller and overflows (and dumps) sooner.
        let forced = nix::sys::socket::setsockopt(
            &socket.as_fd(),
            nix::sys::socket::sockopt::RcvBufForce,
            &QUEUE_BYTES,
        );
        if forced.is_err() {
            let _ = socket.set_rx_buf_sz(QUEUE_BYTES);
        }
        Ok(Subscription {
            socket,
            buffer: Vec::with_capacity(1 << 16),
        })
    }

    /// Reads every queued notification into `view`; without blocking.
    pub fn drain(&mut self, view: &mut KernelView) -> io::Result<Drained> {
        let mut drained = Drained::default();
        loop {
            self.buffer.clear();
            match self.socket.recv(&mut self.buffer, 0) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(drained),
                Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENOBUFS as i32) => {
                    drained.lost = true;
                    continue;
                }
                Err(e) => return Err(e),
            }
            let mut offset = 0;
            while offset < self.buffer.len() {
                let Ok(message) =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buffer[offset..])
                else {
                    drained.lost = true;
                    break;
                };
                let length = message.header.length as usize;
                if length == 0 {
                    break;
                }
                offset += (length + 3) & !3;
                match message.payload {
                    NetlinkPayload::InnerMessage(inner) => {
                        drained
                            .refetch
                            .extend(view.fold(inner, &mut drained.touched));
                    }
                    NetlinkPayload::Overrun(_) => drained.lost = true,
                    _ => {}
                }
            }
        }
    }
}

fn mac_of(bytes: &[u8]) -> Option<Mac> {
    Some(Mac(bytes.try_into().ok()?))
}

/// The address of a neighbour attribute. FDB entries (family bridge) come
/// back as raw bytes, 4 or 16 of them.
fn neighbour_ip(address: &NeighbourAddress) -> Option<IpAddr> {
    match address {
        NeighbourAddress::Inet(a) => Some(IpAddr::V4(*a)),
        NeighbourAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        NeighbourAddress::Other(bytes) => match bytes.len() {
            4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes.as_slice()).ok()?)),
            16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes.as_slice()).ok()?)),
            _ => None,
        },
        _ => None,
    }
}

/// The address of a neighbour or FDB entry.
fn destination(entry: &NeighbourMessage) -> Option<IpAddr> {
    entry.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(d) => neighbour_ip(d),
        _ => None,
    })
}

/// The MAC and the address of a neighbour or FDB entry.
fn mac_and_ip(entry: &NeighbourMessage) -> Option<(Mac, IpAddr)> {
    let mac = entry.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(b) => mac_of(b),
        _ => None,
    })?;
    Some((mac, destination(entry)?))
}

/// Reads one link message.
fn link_record(message: &LinkMessage) -> Option<LinkRecord> {
    let mut name = None;
    let mut alias = None;
    let mut master = None;
    let mut mtu = 0;
    let mut kind = ObservedKind::Other(String::new());
    let mut isolated = false;
    let mut parent = None;
    let mut host_ipv6 = false;
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::AfSpecUnspec(specs) => host_ipv6 = configures_host_ipv6(specs),
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::IfAlias(a) => alias = Some(a.clone()),
            LinkAttribute::Controller(index) => master = Some(*index),
            LinkAttribute::Mtu(m) => mtu = *m,
            LinkAttribute::Link(index) => parent = Some(*index),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(InfoKind::Bridge) => {
                            kind = ObservedKind::Bridge {
                                learned_limit: None,
                            }
                        }
                        LinkInfo::Data(InfoData::Bridge(data)) => {
                            kind = ObservedKind::Bridge {
                                learned_limit: data.iter().find_map(|d| match d {
                                    InfoBridge::FdbMaxLearned(n) => Some(*n),
                                    _ => None,
                                }),
                            }
                        }
                        LinkInfo::Kind(InfoKind::Veth) => kind = ObservedKind::Veth,
                        LinkInfo::Kind(other) if kind == ObservedKind::Other(String::new()) => {
                            kind = ObservedKind::Other(other.to_string())
                        }
                        LinkInfo::Data(InfoData::Vxlan(data)) => kind = vxlan_kind(data),
                        LinkInfo::Data(InfoData::Vlan(data)) => {
                            let id = data.iter().find_map(|d| match d {
                                InfoVlan::Id(id) => Some(*id),
                                _ => None,
                            });
                            kind = ObservedKind::Vlan {
                                id: id.unwrap_or(0),
                                parent: None,
                            };
                        }
                        LinkInfo::PortData(InfoPortData::BridgePort(port)) => {
                            isolated = port
                                .iter()
                                .any(|p| matches!(p, InfoBridgePort::Isolated(true)))
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let ours = alias
        .as_deref()
        .is_some_and(|a| a.starts_with(neutrino_core::names::ALIAS_MARK));
    if ours
        && kind
            == (ObservedKind::Bridge {
                learned_limit: None,
            })
    {
        unbounded_learning();
    }
    Some(LinkRecord {
        name: name?,
        kind,
        alias,
        master,
        parent,
        mtu,
        up: message.header.flags.contains(LinkFlags::Up),
        isolated,
        host_ipv6,
    })
}

/// Says once that this kernel lets bridges learn MACs without bound: it
/// has no `IFLA_BR_FDB_MAX_LEARNED` (Linux 6.7 added it).
fn unbounded_learning() {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        tracing::warn!(
            "this kernel does not bound the MACs a bridge learns (Linux 6.7 and later do): \
             a port without port security can fill its network's bridge table"
        )
    });
}

/// Whether the node's IPv6 configures itself on the link: it runs there
/// and makes addresses or takes router advertisements. A kernel without
/// IPv6 reports no configuration.
fn configures_host_ipv6(specs: &[AfSpecUnspec]) -> bool {
    specs.iter().any(|spec| match spec {
        AfSpecUnspec::Inet6(inet6) => inet6.iter().any(|c| {
            matches!(c, AfSpecInet6::DevConf(conf) if conf.disable_ipv6 == 0
                && (conf.addr_gen_mode != ADDR_GEN_MODE_NONE || conf.accept_ra != 0 || conf.autoconf != 0))
        }),
        _ => false,
    })
}

/// `addr_gen_mode` when the kernel makes no address of its own.
const ADDR_GEN_MODE_NONE: i32 = 1;

fn vxlan_kind(data: &[InfoVxlan]) -> ObservedKind {
    let mut vni = 0;
    let mut local = None;
    let mut port = 0;
    let mut learning = true;
    let mut proxy = false;
    for d in data {
        match d {
            InfoVxlan::Id(v) => vni = *v,
            InfoVxlan::Local(a) => local = Some(IpAddr::V4(*a)),
            InfoVxlan::Local6(a) => local = Some(IpAddr::V6(*a)),
            InfoVxlan::Port(p) => port = *p,
            InfoVxlan::Learning(l) => learning = *l,
            InfoVxlan::Proxy(p) => proxy = *p,
            _ => {}
        }
    }
    ObservedKind::Vxlan {
        vni,
        local,
        port,
        learning,
        proxy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::route::RouteType;

    fn link(index: u32, name: &str, kind: InfoKind, master: Option<u32>) -> LinkMessage {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.attributes.push(LinkAttribute::IfName(name.into()));
        message
            .attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(kind)]));
        if let Some(master) = master {
            message.attributes.push(LinkAttribute::Controller(master));
        }
        message
    }

    fn vxlan(index: u32, name: &str) -> LinkMessage {
        let mut message = link(index, name, InfoKind::Vxlan, None);
        message
            .attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Data(
                InfoData::Vxlan(vec![InfoVxlan::Id(1001)]),
            )]));
        message
    }

    fn entry(family: AddressFamily, index: u32, mac: Mac, ip: &str) -> NeighbourMessage {
        let mut message = NeighbourMessage::default();
        message.header.family = family;
        message.header.ifindex = index;
        message.header.state = NeighbourState::Permanent;
        message.header.kind = RouteType::Unspec;
        let address = match ip.parse().unwrap() {
            IpAddr::V4(a) if family == AddressFamily::Bridge => {
                NeighbourAddress::Other(a.octets().to_vec())
            }
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        };
        message.attributes.extend([
            NeighbourAttribute::Destination(address),
            NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()),
        ]);
        message
    }

    fn fold(view: &mut KernelView, message: RouteNetlinkMessage) -> Option<u32> {
        view.fold(message, &mut BTreeSet::new())
    }

    const PEER: Mac = Mac([2, 0x6e, 0, 0, 0, 1]);

    fn destinations(view: &KernelView, mac: Mac) -> Vec<String> {
        view.observed(None)
            .fdb
            .iter()
            .filter(|e| e.mac == mac)
            .map(|e| e.destination.to_string())
            .collect()
    }

    #[test]
    fn a_port_names_its_bridge_whichever_came_first() {
        let mut view = KernelView::default();
        fold(
            &mut view,
            RouteNetlinkMessage::NewLink(link(7, "ntp-a", InfoKind::Veth, Some(5))),
        );
        fold(
            &mut view,
            RouteNetlinkMessage::NewLink(link(5, "ntb-a", InfoKind::Bridge, None)),
        );
        let links = view.observed(None).links;
        assert_eq!(links[1].name, "ntp-a");
        assert_eq!(links[1].master.as_deref(), Some("ntb-a"));
        assert_eq!(view.indexes()["ntb-a"], 5);
    }

    #[test]
    fn flood_entries_add_up_and_a_unicast_entry_is_replaced() {
        let mut view = KernelView::from_dump(&[vxlan(3, "ntx-a")], &[], &[]);
        for ip in ["192.0.2.1", "192.0.2.2"] {
            fold(
                &mut view,
                RouteNetlinkMessage::NewNeighbour(entry(AddressFamily::Bridge, 3, Mac::ZERO, ip)),
            );
        }
        for ip in ["192.0.2.1", "192.0.2.2"] {
            fold(
                &mut view,
                RouteNetlinkMessage::NewNeighbour(entry(AddressFamily::Bridge, 3, PEER, ip)),
            );
        }
        assert_eq!(destinations(&view, Mac::ZERO), ["192.0.2.1", "192.0.2.2"]);
        assert_eq!(destinations(&view, PEER), ["192.0.2.2"]);
        fold(
            &mut view,
            RouteNetlinkMessage::DelNeighbour(entry(
                AddressFamily::Bridge,
                3,
                Mac::ZERO,
                "192.0.2.1",
            )),
        );
        assert_eq!(destinations(&view, Mac::ZERO), ["192.0.2.2"]);
    }

    #[test]
    fn a_dump_keeps_every_destination_of_a_mac() {
        let fdb = ["192.0.2.1", "192.0.2.2"].map(|ip| entry(AddressFamily::Bridge, 3, PEER, ip));
        let view = KernelView::from_dump(&[vxlan(3, "ntx-a")], &fdb, &[]);
        assert_eq!(destinations(&view, PEER), ["192.0.2.1", "192.0.2.2"]);
    }

    #[test]
    fn a_neighbour_counts_while_permanent_and_goes_with_its_link() {
        let mut view = KernelView::from_dump(&[vxlan(3, "ntx-a")], &[], &[]);
        fold(
            &mut view,
            RouteNetlinkMessage::NewNeighbour(entry(AddressFamily::Inet, 3, PEER, "10.0.0.5")),
        );
        fold(
            &mut view,
            RouteNetlinkMessage::NewNeighbour(entry(AddressFamily::Bridge, 3, PEER, "192.0.2.1")),
        );
        assert_eq!(view.observed(None).neighbours.len(), 1);
        let mut stale = entry(AddressFamily::Inet, 3, PEER, "10.0.0.5");
        stale.header.state = NeighbourState::Stale;
        fold(&mut view, RouteNetlinkMessage::NewNeighbour(stale));
        assert!(view.observed(None).neighbours.is_empty());
        assert_eq!(view.observed(None).fdb.len(), 1);

        fold(&mut view, RouteNetlinkMessage::DelLink(vxlan(3, "ntx-a")));
        // A new link that takes the index starts empty.
        fold(&mut view, RouteNetlinkMessage::NewLink(vxlan(3, "ntx-b")));
        assert_eq!(view.observed(None).fdb, Vec::new());
    }

    #[test]
    fn a_neighbour_removed_without_its_mac_goes() {
        let mut view = KernelView::from_dump(&[vxlan(3, "ntx-a")], &[], &[]);
        fold(
            &mut view,
            RouteNetlinkMessage::NewNeighbour(entry(AddressFamily::Inet, 3, PEER, "10.0.0.5")),
        );
        let mut gone = entry(AddressFamily::Inet, 3, PEER, "10.0.0.5");
        gone.attributes
            .retain(|a| !matches!(a, NeighbourAttribute::LinkLayerAddress(_)));
        fold(&mut view, RouteNetlinkMessage::DelNeighbour(gone));
        assert!(view.observed(None).neighbours.is_empty());
    }

    #[test]
    fn entries_of_links_other_than_vxlan_are_not_observed() {
        let mut view = KernelView::from_dump(
            &[link(2, "eth0", InfoKind::Veth, None), vxlan(3, "ntx-a")],
            &[],
            &[],
        );
        fold(
            &mut view,
            RouteNetlinkMessage::NewNeighbour(entry(AddressFamily::Inet, 2, PEER, "198.18.0.9")),
        );
        assert!(view.observed(None).neighbours.is_empty());
    }

    #[test]
    fn a_bridge_port_notice_asks_for_the_link_again() {
        let mut view = KernelView::from_dump(&[vxlan(3, "ntx-a")], &[], &[]);
        let before = view.clone();
        let mut notice = vxlan(3, "ntx-a");
        notice.header.interface_family = AddressFamily::Bridge;
        assert_eq!(
            fold(&mut view, RouteNetlinkMessage::DelLink(notice.clone())),
            Some(3)
        );
        assert_eq!(
            fold(&mut view, RouteNetlinkMessage::NewLink(notice)),
            Some(3)
        );
        assert_eq!(view, before);
    }

    #[test]
    fn a_notice_names_its_link_and_master_and_a_part_reads_alone() {
        let mut view = KernelView::from_dump(
            &[
                link(5, "ntb-a", InfoKind::Bridge, None),
                link(7, "ntp-a", InfoKind::Veth, Some(5)),
                link(8, "ntp-b", InfoKind::Veth, Some(5)),
            ],
            &[],
            &[],
        );
        let mut touched = BTreeSet::new();
        let mut moved = link(7, "ntp-a", InfoKind::Veth, None);
        moved.attributes.push(LinkAttribute::Mtu(1400));
        view.fold(RouteNetlinkMessage::NewLink(moved), &mut touched);
        assert_eq!(touched, BTreeSet::from(["ntb-a".into(), "ntp-a".into()]));

        let part = view.observed(Some(&BTreeSet::from(["ntp-b".to_string()])));
        let names: Vec<&str> = part.links.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["ntb-a", "ntp-b"], "the port, and its master");
    }
}
