//! The kernel through rtnetlink: reads links, FDB and neighbour entries
//! into an [`Observed`] (through the [`KernelView`] the kernel's
//! notifications keep), applies [`Changes`], and counts every write.

use futures::{StreamExt, TryStreamExt};
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::link::{
    InfoBridge, InfoBridgePort, InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::RouteType;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkBridgePort, LinkUnspec, LinkVeth, LinkVlan, LinkVxlan};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::kernel_view::{KernelView, Subscription};
use super::netns;
use neutrino_core::allocate::Mac;
use neutrino_core::config::BRIDGE_LEARNED_MACS;
use neutrino_core::reconcile::{
    Changes, DesiredLink, FdbKey, LinkChange, LinkKind, NeighbourKey, Observed,
};

/// A failed kernel operation, with what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink socket in namespace {namespace}: {cause}")]
    Connect {
        namespace: String,
        cause: std::io::Error,
    },
    #[error("{what}: {cause}")]
    Request {
        what: String,
        cause: rtnetlink::Error,
    },
    #[error("{what}: no link named {name}")]
    NoLink { what: String, name: String },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
}

type Result<T> = std::result::Result<T, NetlinkError>;

/// A netlink connection bound to one network namespace.
pub struct Netlink {
    handle: Handle,
    namespace: Option<String>,
    writes: AtomicUsize,
    /// Link indexes by name, from the last dump and what was created since,
    /// so that an apply does not look every link up again.
    indexes: Mutex<HashMap<String, u32>>,
    /// The kernel's links and entries, once first observed.
    watch: tokio::sync::Mutex<Option<Watch>>,
    /// How long the view is trusted before it is dumped afresh.
    dump_every: Duration,
    /// Started at the first link whose IPv6 is turned off.
    sysctls: Mutex<Option<std::sync::Arc<netns::SysctlWriter>>>,
}

/// The view and the notifications that keep it current.
struct Watch {
    subscription: Subscription,
    /// None until the first dump, and once notifications were lost.
    view: Option<KernelView>,
    /// When the view was last dumped whole, if nothing was lost since.
    dumped: Option<Instant>,
}

fn failed(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let what = what.into();
    move |cause| NetlinkError::Request { what, cause }
}

fn family(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// A permanent entry: `mac` at `destination` on link `index`, for the bridge
/// family (a VXLAN FDB entry) or an address family (a neighbour).
fn permanent_entry(
    family: AddressFamily,
    index: u32,
    mac: Mac,
    destination: IpAddr,
) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = family;
    message.header.ifindex = index;
    message.header.state = NeighbourState::Permanent;
    message.header.kind = RouteType::Unspec;
    message.attributes.extend([
        NeighbourAttribute::Destination(neighbour_address(destination)),
        NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()),
    ]);
    message
}

fn neighbour_address(ip: IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(a) => NeighbourAddress::Inet(a),
        IpAddr::V6(a) => NeighbourAddress::Inet6(a),
    }
}

impl Netlink {
    /// Connects inside the namespace `namespace` (the current one when `None`).
    pub async fn connect(namespace: Option<&str>) -> Result<Netlink> {
        let runtime = tokio::runtime::Handle::current();
        let name = namespace.unwrap_or("(current)").to_string();
        let error = |cause| NetlinkError::Connect {
            namespace: name.clone(),
            cause,
        };
        // The socket belongs to the namespace of the thread that opens it.
        let (connection, handle, _) = netns::run_in(namespace, move || {
            let _entered = runtime.enter();
            rtnetlink::new_connection()
        })
        .map_err(error)?
        .map_err(error)?;
        tokio::spawn(connection);
        Ok(Netlink {
            handle,
            namespace: namespace.map(str::to_string),
            writes: AtomicUsize::new(0),
            indexes: Mutex::new(HashMap::new()),
            watch: tokio::sync::Mutex::new(None),
            dump_every: Duration::ZERO,
            sysctls: Mutex::new(None),
        })
    }

    /// Trusts the view the kernel's notifications keep for `every` before
    /// dumping it afresh (by default every observation dumps).
    pub fn dumping_every(mut self, every: Duration) -> Self {
        self.dump_every = every;
        self
    }

    /// Kernel writes made through this connection so far.
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::Relaxed)
    }

    pub(super) fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the link `name` is up; an error when there is no such link.
    pub(super) async fn link_flags(&self, name: &str) -> Result<bool> {
        let mut found = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match found.try_next().await {
            Ok(Some(link)) => Ok(link.header.flags.contains(LinkFlags::Up)),
            Ok(None) | Err(rtnetlink::Error::NetlinkError(_)) => Err(NetlinkError::NoLink {
                what: "checking it is up".into(),
                name: name.into(),
            }),
            Err(e) => Err(failed(format!("looking up {name}"))(e)),
        }
    }

    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// Every link of the namespace.
    pub(crate) async fn links(&self) -> Result<Vec<LinkMessage>> {
        self.handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(failed("listing links"))
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.indexes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The index of the link `name`.
    pub async fn index(&self, name: &str) -> Result<Option<u32>> {
        if let Some(index) = self.cached().get(name) {
            return Ok(Some(*index));
        }
        let mut found = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match found.try_next().await {
            Ok(link) => {
                let index = link.map(|l| l.header.index);
                if let Some(index) = index {
                    self.cached().insert(name.to_string(), index);
                }
                Ok(index)
            }
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc_enodev() => Ok(None),
            Err(e) => Err(failed(format!("looking up {name}"))(e)),
        }
    }

    pub async fn require(&self, name: &str, what: &str) -> Result<u32> {
        self.index(name).await?.ok_or_else(|| NetlinkError::NoLink {
            what: what.to_string(),
            name: name.to_string(),
        })
    }

    /// Links, VXLAN FDB entries and permanent neighbours: all of them.
    pub async fn observe(&self) -> Result<Observed> {
        self.touched().await?;
        self.observed(None).await
    }

    /// Brings the view the kernel's notifications keep up to date, and
    /// says which links (with their entries) changed since the last time:
    /// by name, with their masters; `None` when the view was dumped afresh
    /// instead — the first time, after notifications were lost, and once
    /// every `dump_every` — and anything may have changed.
    pub async fn touched(&self) -> Result<Option<BTreeSet<String>>> {
        let socket_failed = |cause| NetlinkError::Connect {
            namespace: self.namespace.clone().unwrap_or("(current)".into()),
            cause,
        };
        let mut guard = self.watch.lock().await;
        if guard.is_none() {
            let subscription = netns::run_in(self.namespace.as_deref(), Subscription::open)
                .and_then(|opened| opened)
                .map_err(socket_failed)?;
            *guard = Some(Watch {
                subscription,
                view: None,
                dumped: None,
            });
        }
        let watch = guard.as_mut().expect("opened above");
        let mut drained = None;
        if let Some(view) = &mut watch.view {
            match watch.subscription.drain(view) {
                Ok(found) if !found.lost => drained = Some(found),
                _ => watch.view = None,
            }
        }
        let due = watch
            .dumped
            .is_none_or(|at| at.elapsed() >= self.dump_every);
        if let (Some(mut found), Some(view), false) = (drained, watch.view.as_mut(), due) {
            for index in std::mem::take(&mut found.refetch) {
                self.refetch(index, view, &mut found.touched).await?;
            }
            let mut indexes = self.cached();
            for name in &found.touched {
                match view.index(name) {
                    Some(index) => indexes.insert(name.clone(), index),
                    None => indexes.remove(name),
                };
            }
            return Ok(Some(found.touched));
        }
        // What queued before the dump is in it; what queues from now on is
        // folded in after it, each link's and entry's last notification
        // telling its state since.
        let _ = watch.subscription.drain(&mut KernelView::default());
        let mut view = self.dump().await?;
        let mut found = watch.subscription.drain(&mut view).map_err(socket_failed)?;
        for index in std::mem::take(&mut found.refetch) {
            self.refetch(index, &mut view, &mut found.touched).await?;
        }
        watch.dumped = (!found.lost).then(Instant::now);
        *self.cached() = view.indexes().clone();
        watch.view = Some(view);
        Ok(None)
    }

    /// What the view holds: every link and the entries of the VXLAN links,
    /// or with `only`, the links named, their masters, and their entries.
    pub async fn observed(&self, only: Option<&BTreeSet<String>>) -> Result<Observed> {
        let guard = self.watch.lock().await;
        match guard.as_ref().and_then(|w| w.view.as_ref()) {
            Some(view) => Ok(view.observed(only)),
            None => Err(NetlinkError::Invalid {
                what: "reading links".into(),
                message: "nothing was read from the kernel yet".into(),
            }),
        }
    }

    /// Every link, FDB entry and neighbour, read from the kernel.
    async fn dump(&self) -> Result<KernelView> {
        let links = self.links().await?;
        let fdb = self
            .neighbour_dump(AddressFamily::Bridge, "listing FDB entries")
            .await?;
        let mut neighbours = self
            .neighbour_dump(AddressFamily::Inet, "listing neighbours")
            .await?;
        neighbours.extend(
            self.neighbour_dump(AddressFamily::Inet6, "listing neighbours")
                .await?,
        );
        Ok(KernelView::from_dump(&links, &fdb, &neighbours))
    }

    /// Reads the link `index` again into `view`; its name goes to `touched`.
    async fn refetch(
        &self,
        index: u32,
        view: &mut KernelView,
        touched: &mut BTreeSet<String>,
    ) -> Result<()> {
        let mut found = self.handle.link().get().match_index(index).execute();
        match found.try_next().await {
            Ok(Some(message)) => view.link(&message),
            Ok(None) => view.link_gone(index),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc_enodev() => {
                view.link_gone(index)
            }
            Err(e) => return Err(failed(format!("reading link {index}"))(e)),
        }
        touched.extend(view.names_of(index).map(str::to_string));
        Ok(())
    }

    /// Every neighbour (or, for the bridge family, FDB) entry of `family`.
    async fn neighbour_dump(
        &self,
        family: AddressFamily,
        what: &str,
    ) -> Result<Vec<NeighbourMessage>> {
        let mut request = self.handle.neighbours().get();
        request.message_mut().header.family = family;
        request.execute().try_collect().await.map_err(failed(what))
    }

    /// Applies `changes` in order. Every change is tried; the failures are
    /// returned, each saying what it was doing.
    pub async fn apply(&self, changes: &Changes) -> Vec<NetlinkError> {
        self.apply_naming_links(changes).await.0
    }

    /// [`Netlink::apply`], with the links whose own changes failed.
    async fn apply_naming_links(&self, changes: &Changes) -> (Vec<NetlinkError>, BTreeSet<String>) {
        let (mut errors, mut failed_links) = (Vec::new(), BTreeSet::new());
        for phase in link_phases(&changes.links) {
            let failed: Vec<(String, NetlinkError)> =
                futures::stream::iter(phase.iter().map(|changes| async move {
                    let result = self.link_changes(changes).await;
                    result.err().map(|e| (changes[0].link().to_string(), e))
                }))
                .buffer_unordered(64)
                .filter_map(|failed| async move { failed })
                .collect()
                .await;
            for (link, error) in failed {
                failed_links.insert(link);
                errors.push(error);
            }
        }
        // Entries are independent of each other: many requests are in flight
        // at once, removals before additions.
        let fdb_remove = self.each(&changes.fdb_remove, |e| self.fdb(e, false)).await;
        let fdb_add = self.each(&changes.fdb_add, |e| self.fdb(e, true)).await;
        let neighbours_remove = self
            .each(&changes.neighbours_remove, |e| self.neighbour(e, false))
            .await;
        let neighbours_add = self
            .each(&changes.neighbours_add, |e| self.neighbour(e, true))
            .await;
        errors.extend(
            fdb_remove
                .into_iter()
                .chain(fdb_add)
                .chain(neighbours_remove)
                .chain(neighbours_add),
        );
        (errors, failed_links)
    }

    /// Runs `operation` on every item, up to 64 at a time; the failures.
    async fn each<'a, T, F, Fut>(&'a self, items: &'a [T], operation: F) -> Vec<NetlinkError>
    where
        F: Fn(&'a T) -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        futures::stream::iter(items.iter().map(operation))
            .buffer_unordered(64)
            .filter_map(|result| async move { result.err() })
            .collect()
            .await
    }

    /// One link's changes, in order; stops at the first failure.
    async fn link_changes(&self, changes: &Vec<&LinkChange>) -> Result<()> {
        for change in changes {
            self.link_change(change).await?;
        }
        Ok(())
    }

    async fn link_change(&self, change: &LinkChange) -> Result<()> {
        match change {
            LinkChange::Create(link) => self.create(link).await,
            LinkChange::Delete(name) => {
                let what = format!("deleting {name}");
                let Some(index) = self.index(name).await? else {
                    return Ok(());
                };
                self.cached().remove(name);
                self.wrote();
                self.handle
                    .link()
                    .del(index)
                    .execute()
                    .await
                    .map_err(failed(what))
            }
            LinkChange::SetMtu(name, mtu) => {
                let index = self.require(name, "setting the MTU").await?;
                self.set(
                    LinkUnspec::new_with_index(index).mtu(*mtu).build(),
                    format!("setting the MTU of {name} to {mtu}"),
                )
                .await
            }
            LinkChange::SetMaster(name, master) => {
                let index = self.require(name, "setting the master").await?;
                let message = match master {
                    Some(bridge) => {
                        let bridge_index = self.require(bridge, "setting the master").await?;
                        LinkUnspec::new_with_index(index)
                            .controller(bridge_index)
                            .build()
                    }
                    None => LinkUnspec::new_with_index(index).nocontroller().build(),
                };
                self.set(
                    message,
                    format!(
                        "attaching {name} to {}",
                        master.as_deref().unwrap_or("no bridge")
                    ),
                )
                .await
            }
            LinkChange::SetIsolated(name, isolated) => {
                let index = self.require(name, "setting isolation").await?;
                let message = LinkBridgePort::new(index)
                    .append_info_data(InfoBridgePort::Isolated(*isolated))
                    .build();
                self.wrote();
                self.handle
                    .link()
                    .set_port(message)
                    .execute()
                    .await
                    .map_err(failed(format!("setting isolated={isolated} on {name}")))
            }
            LinkChange::NoHostIpv6 { name, proxy } => {
                self.no_host_ipv6(name, *proxy, true).await?;
                // The kernel tells of this in no link notification.
                self.reread(name).await
            }
            LinkChange::LimitLearning { name, limit } => {
                let index = self.require(name, "bounding MAC learning").await?;
                let message = LinkBridge::new(name)
                    .index(index)
                    .append_info_data(InfoBridge::FdbMaxLearned(*limit))
                    .build();
                // RTM_NEWLINK on the existing link: SETLINK ignores link info.
                self.wrote();
                self.handle
                    .link()
                    .change(message)
                    .execute()
                    .await
                    .map_err(failed(format!("bounding {name}'s learned MACs to {limit}")))
            }
            LinkChange::SetUp(name) => {
                let index = self.require(name, "setting up").await?;
                self.set(
                    LinkUnspec::new_with_index(index).up().build(),
                    format!("setting {name} up"),
                )
                .await
            }
        }
    }

    /// Takes the node's IPv6 off `name`: off altogether, or with `proxy`
    /// (a VXLAN link, whose IPv6 neighbour table needs IPv6 running) no
    /// address made and no advertisement taken; with `flush`, the
    /// addresses it already made go (turning IPv6 off and on drops them).
    /// A kernel without IPv6 has nothing to take off.
    async fn no_host_ipv6(&self, name: &str, proxy: bool, flush: bool) -> Result<()> {
        let writer = self.sysctls().map_err(|e| no_host_ipv6_failed(name, e))?;
        // With IPv6 running, no address made and no advertisement taken.
        const RUNNING: [(&str, &str); 3] = [
            ("addr_gen_mode", "1"),
            ("accept_ra", "0"),
            ("autoconf", "0"),
        ];
        let mut settings = match proxy {
            true => RUNNING.to_vec(),
            false => vec![("disable_ipv6", "1")],
        };
        if proxy && flush {
            settings.extend([("disable_ipv6", "1"), ("disable_ipv6", "0")]);
        }
        for (setting, value) in settings {
            self.wrote();
            match writer
                .write(&format!("net/ipv6/conf/{name}/{setting}"), value)
                .await
            {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !ipv6_in_kernel() => {
                    return Ok(());
                }
                Err(e) => return Err(no_host_ipv6_failed(name, e)),
                Ok(()) => {}
            }
        }
        Ok(())
    }

    /// The namespace's sysctl writer, started the first time it is needed.
    fn sysctls(&self) -> std::io::Result<std::sync::Arc<netns::SysctlWriter>> {
        let mut started = self.sysctls.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(writer) = started.as_ref() {
            return Ok(writer.clone());
        }
        let writer = std::sync::Arc::new(netns::SysctlWriter::start(self.namespace.as_deref())?);
        *started = Some(writer.clone());
        Ok(writer)
    }

    /// Reads the link `name` again into the view, for a change the kernel
    /// sends no notification of.
    async fn reread(&self, name: &str) -> Result<()> {
        let mut guard = self.watch.lock().await;
        let Some(view) = guard.as_mut().and_then(|w| w.view.as_mut()) else {
            return Ok(());
        };
        let Some(index) = view.index(name) else {
            return Ok(());
        };
        self.refetch(index, view, &mut BTreeSet::new()).await
    }

    pub(crate) async fn set(&self, message: LinkMessage, what: String) -> Result<()> {
        self.wrote();
        self.handle
            .link()
            .set(message)
            .execute()
            .await
            .map_err(failed(what))
    }

    /// Creates a link attached to its master, turns the node's IPv6 off on
    /// it before it is up (so it never takes an address or a router
    /// advertisement), then sets it up and marks it as neutrino's with its
    /// alias (which the kernel only takes on a change).
    pub(crate) async fn create(&self, link: &DesiredLink) -> Result<()> {
        let what = format!("creating {}", link.name);
        let mtu = link.mtu.unwrap_or(1500);
        let master = match &link.master {
            Some(bridge) => Some(self.require(bridge, &what).await?),
            None => None,
        };
        // Held open until the request is sent: the kernel reads the descriptor.
        let mut peer_namespace = None;
        let message = match &link.kind {
            LinkKind::Bridge => LinkBridge::new(&link.name)
                .mtu(mtu)
                .append_info_data(InfoBridge::FdbMaxLearned(BRIDGE_LEARNED_MACS))
                .build(),
            LinkKind::Vxlan { vni, local, port } => {
                let builder = LinkVxlan::new(&link.name, *vni)
                    .port(*port)
                    .learning(false)
                    .proxy(true)
                    .mtu(mtu);
                match local {
                    IpAddr::V4(a) => builder.local(*a).build(),
                    IpAddr::V6(a) => builder.local6(*a).build(),
                }
            }
            LinkKind::Vlan { parent, id } => {
                let parent_index = self.require(parent, &what).await?;
                LinkVlan::new(&link.name, parent_index, *id)
                    .mtu(mtu)
                    .build()
            }
            LinkKind::Veth {
                peer,
                peer_mac,
                peer_netns,
            } => {
                let file = peer_netns
                    .as_deref()
                    .map(netns::open)
                    .transpose()
                    .map_err(|cause| NetlinkError::Connect {
                        namespace: peer_netns.clone().unwrap_or_default(),
                        cause,
                    })?;
                let mut peer_message = LinkUnspec::new_with_name(peer)
                    .address(peer_mac.0.to_vec())
                    .mtu(mtu);
                if let Some(file) = &file {
                    peer_message = peer_message.setns_by_fd(file.as_raw_fd());
                }
                peer_namespace = file;
                LinkVeth::new(&link.name, peer)
                    .mtu(mtu)
                    .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_message.build())))
                    .build()
            }
            LinkKind::Physical => return Ok(()),
        };
        let mut message = message;
        if let Some(master) = master {
            message.attributes.push(LinkAttribute::Controller(master));
        }
        let refused = if matches!(link.kind, LinkKind::Vlan { .. }) {
            format!(
                "{what} (a kernel without 802.1Q support, CONFIG_VLAN_8021Q, refuses VLAN links)"
            )
        } else {
            what.clone()
        };
        self.wrote();
        self.handle
            .link()
            .add(message)
            .execute()
            .await
            .map_err(failed(refused))?;
        drop(peer_namespace);
        let proxy = matches!(link.kind, LinkKind::Vxlan { .. });
        self.no_host_ipv6(&link.name, proxy, false).await?;
        let mut alias = LinkUnspec::new_with_name(&link.name).up().build();
        alias
            .attributes
            .push(LinkAttribute::IfAlias(link.alias.clone()));
        self.set(alias, format!("marking {} as neutrino's", link.name))
            .await
    }

    /// The index of the device an entry goes on or comes off; `None` when an
    /// entry is to come off a device that is gone already (and took it).
    async fn entry_device(&self, device: &str, add: bool, what: &str) -> Result<Option<u32>> {
        match self.index(device).await? {
            None if add => Err(NetlinkError::NoLink {
                what: what.to_string(),
                name: device.to_string(),
            }),
            found => Ok(found),
        }
    }

    /// Adds or removes one VXLAN FDB entry. All-zero entries (one per peer)
    /// are appended, since the kernel keeps one list per MAC.
    async fn fdb(&self, entry: &FdbKey, add: bool) -> Result<()> {
        let what = format!(
            "{} FDB entry {} dst {} on {}",
            if add { "adding" } else { "removing" },
            entry.mac,
            entry.destination,
            entry.device
        );
        let Some(index) = self.entry_device(&entry.device, add, &what).await? else {
            return Ok(());
        };
        let mut message =
            permanent_entry(AddressFamily::Bridge, index, entry.mac, entry.destination);
        message.header.flags = NeighbourFlags::Own;
        let flags = if entry.mac == Mac::ZERO {
            NLM_F_APPEND
        } else {
            NLM_F_REPLACE
        };
        self.send(message, add, flags, what).await
    }

    /// Adds or removes one static neighbour entry.
    async fn neighbour(&self, entry: &NeighbourKey, add: bool) -> Result<()> {
        let what = format!(
            "{} neighbour {} lladdr {} on {}",
            if add { "adding" } else { "removing" },
            entry.ip,
            entry.mac,
            entry.device
        );
        let Some(index) = self.entry_device(&entry.device, add, &what).await? else {
            return Ok(());
        };
        let message = permanent_entry(family(entry.ip), index, entry.mac, entry.ip);
        self.send(message, add, NLM_F_REPLACE, what).await
    }

    async fn send(
        &self,
        message: NeighbourMessage,
        add: bool,
        flags: u16,
        what: String,
    ) -> Result<()> {
        let payload = if add {
            RouteNetlinkMessage::NewNeighbour(message)
        } else {
            RouteNetlinkMessage::DelNeighbour(message)
        };
        let mut outgoing = NetlinkMessage::from(payload);
        outgoing.header.flags =
            NLM_F_REQUEST | NLM_F_ACK | if add { NLM_F_CREATE | flags } else { 0 };
        self.wrote();
        let mut handle = self.handle.clone();
        let mut responses = handle.request(outgoing).map_err(failed(what.clone()))?;
        while let Some(response) = responses.next().await {
            if let NetlinkPayload::Error(e) = response.payload
                && e.code.is_some()
            {
                // Removing what is already gone is not a failure.
                if !add && e.raw_code() == -libc_enoent() {
                    return Ok(());
                }
                return Err(NetlinkError::Request {
                    what,
                    cause: rtnetlink::Error::NetlinkError(e),
                });
            }
        }
        Ok(())
    }

    /// The handle, for namespace-internal configuration.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

fn no_host_ipv6_failed(name: &str, cause: std::io::Error) -> NetlinkError {
    NetlinkError::Invalid {
        what: format!("taking the node's IPv6 off {name}"),
        message: cause.to_string(),
    }
}

/// Whether this kernel runs IPv6 at all (not booted with ipv6.disable=1).
fn ipv6_in_kernel() -> bool {
    std::path::Path::new("/proc/sys/net/ipv6").exists()
}

const fn libc_enodev() -> i32 {
    19
}

const fn libc_enoent() -> i32 {
    2
}

/// Link changes in phases that must follow each other — removals, bridges,
/// the links attached to them, then settings — each phase grouped by link,
/// so that different links proceed together and one link's steps in order.
fn link_phases(changes: &[LinkChange]) -> Vec<Vec<Vec<&LinkChange>>> {
    let phase = |change: &LinkChange| match change {
        LinkChange::Delete(_) => 0,
        LinkChange::Create(link) if link.kind == LinkKind::Bridge => 1,
        LinkChange::Create(_) => 2,
        _ => 3,
    };
    let mut phases: Vec<BTreeMap<&str, Vec<&LinkChange>>> = vec![BTreeMap::new(); 4];
    for change in changes {
        phases[phase(change)]
            .entry(change.link())
            .or_default()
            .push(change);
    }
    phases
        .into_iter()
        .map(|p| p.into_values().collect())
        .collect()
}

impl crate::backend::Links for Netlink {
    async fn touched(
        &self,
    ) -> std::result::Result<Option<BTreeSet<String>>, crate::backend::Failure> {
        Ok(Netlink::touched(self).await?)
    }

    async fn observe(
        &self,
        only: Option<&BTreeSet<String>>,
    ) -> std::result::Result<Observed, crate::backend::Failure> {
        Ok(Netlink::observed(self, only).await?)
    }

    async fn apply(&self, changes: &Changes) -> crate::backend::Applied {
        let before = self.writes();
        let (errors, failed_links) = self.apply_naming_links(changes).await;
        crate::backend::Applied {
            writes: self.writes() - before,
            errors: errors.into_iter().map(Into::into).collect(),
            failed_links,
        }
    }
}
