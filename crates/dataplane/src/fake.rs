//! In-memory backends that behave as the kernel does where the agent's
//! order matters: a veth end cannot go into a namespace that does not
//! exist, an address needs its interface, a route its next hop on a
//! connected subnet, a DHCP server an address to bind to, and a namespace
//! still used by a server cannot go. Every write is journalled, so tests
//! see what the agent did and in which order, without root.

use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use neutrino_core::boundary::Boundary;
use neutrino_core::dnsmasq::{DhcpChange, ObservedServer, listed};
use neutrino_core::firewall::BridgePorts;
use neutrino_core::inside::{InnerNamespace, InsideChange, ObservedInside, ObservedInterface};
use neutrino_core::plan::{RouterPlan, SecurityPlan};
use neutrino_core::reconcile::{
    Changes, LinkChange, LinkKind, Observed, ObservedKind, ObservedLink,
};

use super::backend::{
    Applied, Backends, DhcpServers, Failure, Inside, InsideNamespace, Links, Namespaces, Rules,
};
use super::dnsmasq::{DhcpError, DhcpReport};

/// Everything the fake kernel holds.
#[derive(Clone, Debug, Default)]
pub struct World {
    /// Every write, in order, as `backend: what`.
    pub journal: Vec<String>,
    /// The node's own links and entries.
    pub node: Observed,
    /// Each veth's peer: its name and the namespace it went to, if any.
    pub peers: BTreeMap<String, (String, Option<String>)>,
    /// The named namespaces and what is inside them.
    pub namespaces: BTreeMap<String, ObservedInside>,
    /// The node's security groups as last applied.
    pub rules: Option<String>,
    /// The node's boundary as last applied.
    pub boundary: Option<Boundary>,
    /// Each router's NAT as last applied, by namespace.
    pub nat: BTreeMap<String, String>,
    pub dhcp: BTreeMap<String, ObservedServer>,
    /// Writes that fail, by the start of their journal line, as a broken
    /// kernel object or program would make them.
    pub broken: Vec<String>,
}

impl World {
    fn wrote(&mut self, what: String) {
        self.journal.push(what);
    }

    /// Refuses a write that [`World::broken`] names.
    fn refuse_broken(&self, what: &str) -> Result<(), Failure> {
        match self.broken.iter().find(|b| what.starts_with(b.as_str())) {
            Some(_) => Err(format!("{what}: refused").into()),
            None => Ok(()),
        }
    }

    fn link(&mut self, name: &str) -> Result<&mut ObservedLink, Failure> {
        self.node
            .links
            .iter_mut()
            .find(|l| l.name == name)
            .ok_or_else(|| format!("no link named {name}").into())
    }

    fn has_link(&self, name: &str) -> bool {
        self.node.links.iter().any(|l| l.name == name)
    }

    /// Removes a link, its veth peer wherever it is, and the entries on it.
    fn remove_link(&mut self, name: &str) {
        self.node.links.retain(|l| l.name != name);
        self.node.fdb.retain(|e| e.device != name);
        self.node.neighbours.retain(|e| e.device != name);
        if let Some((peer, namespace)) = self.peers.remove(name) {
            match namespace.and_then(|ns| self.namespaces.get_mut(&ns)) {
                Some(inside) => {
                    inside.interfaces.remove(&peer);
                }
                None => self.node.links.retain(|l| l.name != peer),
            }
        }
    }

    fn create(&mut self, link: &neutrino_core::reconcile::DesiredLink) -> Result<(), Failure> {
        if self.has_link(&link.name) {
            return Err(format!("creating {}: it exists", link.name).into());
        }
        if let Some(master) = &link.master
            && !self.has_link(master)
        {
            return Err(format!("creating {}: no bridge named {master}", link.name).into());
        }
        let Some(kind) = link.kind.as_observed() else {
            return Err(format!("creating {}: it is not neutrino's to make", link.name).into());
        };
        if let LinkKind::Veth {
            peer, peer_netns, ..
        } = &link.kind
        {
            match peer_netns {
                Some(ns) => {
                    let inside = self.namespaces.get_mut(ns).ok_or_else(|| {
                        format!("creating {}: no namespace named {ns}", link.name)
                    })?;
                    inside
                        .interfaces
                        .insert(peer.clone(), ObservedInterface::default());
                }
                None => self.node.links.push(ObservedLink {
                    name: peer.clone(),
                    kind: ObservedKind::Veth,
                    alias: None,
                    master: None,
                    mtu: link.mtu.unwrap_or(1500),
                    up: false,
                    isolated: false,
                    host_ipv6: true,
                }),
            }
            self.peers
                .insert(link.name.clone(), (peer.clone(), peer_netns.clone()));
        }
        self.node.links.push(ObservedLink {
            name: link.name.clone(),
            kind,
            alias: Some(link.alias.clone()),
            master: link.master.clone(),
            mtu: link.mtu.unwrap_or(1500),
            up: true,
            isolated: false,
            host_ipv6: false,
        });
        Ok(())
    }

    fn link_change(&mut self, change: &LinkChange) -> Result<(), Failure> {
        self.refuse_broken(&format!("links: {change:?}"))?;
        match change {
            LinkChange::Create(link) => self.create(link)?,
            LinkChange::Delete(name) => self.remove_link(name),
            LinkChange::SetMtu(name, mtu) => self.link(name)?.mtu = *mtu,
            LinkChange::SetMaster(name, master) => {
                if let Some(bridge) = master
                    && !self.has_link(bridge)
                {
                    return Err(format!("attaching {name}: no bridge named {bridge}").into());
                }
                self.link(name)?.master = master.clone();
            }
            LinkChange::SetIsolated(name, isolated) => self.link(name)?.isolated = *isolated,
            LinkChange::SetUp(name) => self.link(name)?.up = true,
            LinkChange::NoHostIpv6 { name, .. } => self.link(name)?.host_ipv6 = false,
            LinkChange::LimitLearning { name, limit } => {
                self.link(name)?.kind = ObservedKind::Bridge {
                    learned_limit: Some(*limit),
                }
            }
        }
        self.wrote(format!("links: {change:?}"));
        Ok(())
    }

    fn inside(&mut self, namespace: &str) -> Result<&mut ObservedInside, Failure> {
        self.namespaces
            .get_mut(namespace)
            .ok_or_else(|| format!("no namespace named {namespace}").into())
    }

    fn inside_change(&mut self, namespace: &str, change: &InsideChange) -> Result<(), Failure> {
        self.refuse_broken(&format!("inside {namespace}: {change:?}"))?;
        let inside = self.inside(namespace)?;
        match change {
            InsideChange::SetUp(name) => interface(inside, namespace, name)?.up = true,
            InsideChange::AddAddress(name, net) => {
                interface(inside, namespace, name)?.addresses.push(*net);
            }
            InsideChange::RemoveAddress(name, net) => {
                interface(inside, namespace, name)?
                    .addresses
                    .retain(|a| a != net);
            }
            InsideChange::AddRoute(route) => {
                let reachable = inside.interfaces.values().any(|i| {
                    i.up && i
                        .addresses
                        .iter()
                        .any(|a: &IpNet| a.contains(&route.nexthop))
                });
                if !reachable {
                    return Err(format!(
                        "in {namespace}: adding route to {} via {}: network unreachable",
                        route.destination, route.nexthop
                    )
                    .into());
                }
                inside.routes.push(route.clone());
            }
            InsideChange::RemoveRoute(route) => inside.routes.retain(|r| r != route),
            InsideChange::Forward(key) => {
                inside.forwarding.insert(key.clone());
            }
        }
        self.wrote(format!("inside {namespace}: {change:?}"));
        Ok(())
    }

    fn dhcp_change(&mut self, change: &DhcpChange, report: &mut DhcpReport) -> Result<(), Failure> {
        self.refuse_broken(&format!("dhcp: {change:?}"))?;
        let namespace = change.namespace().to_string();
        match change {
            DhcpChange::Prepare { .. } => {
                self.dhcp.entry(namespace.clone()).or_default().prepared = true;
            }
            DhcpChange::WriteOptions { content, .. } => {
                self.server(&namespace)?.options = Some(content.clone());
            }
            DhcpChange::AddHost { name, content, .. } => {
                self.server(&namespace)?
                    .added
                    .insert(name.clone(), content.clone());
            }
            DhcpChange::ListHosts {
                content, folded, ..
            } => {
                let server = self.server(&namespace)?;
                server.listed = listed(content);
                for name in folded {
                    server.added.remove(name);
                }
            }
            DhcpChange::Release { ip, mac, .. } => {
                if !self.server(&namespace)?.running {
                    return Err(format!("releasing {ip}: no server runs in {namespace}").into());
                }
                report.released.push(format!("{ip} {mac} in {namespace}"));
            }
            DhcpChange::Start { args, .. } | DhcpChange::Restart { args, .. } => {
                let interface = args
                    .iter()
                    .find_map(|a| a.strip_prefix("--interface="))
                    .unwrap_or_default();
                let bound = self
                    .namespaces
                    .get(&namespace)
                    .and_then(|inside| inside.interfaces.get(interface))
                    .is_some_and(|i| i.up && !i.addresses.is_empty());
                if !bound {
                    return Err(format!(
                        "starting dnsmasq in {namespace}: {interface} has no address to bind to"
                    )
                    .into());
                }
                let server = self.server(&namespace)?;
                server.args = args.clone();
                server.running = true;
                match change {
                    DhcpChange::Start { .. } => report.started.push(namespace.clone()),
                    _ => report.restarted.push(namespace.clone()),
                }
            }
            DhcpChange::Reload { .. } => report.reloaded.push(namespace.clone()),
            DhcpChange::Stop { .. } => {
                self.dhcp.remove(&namespace);
                report.stopped.push(namespace.clone());
            }
        }
        self.wrote(format!("dhcp: {change:?}"));
        Ok(())
    }

    fn server(&mut self, namespace: &str) -> Result<&mut ObservedServer, Failure> {
        self.dhcp
            .get_mut(namespace)
            .filter(|s| s.prepared)
            .ok_or_else(|| format!("no directory for the server in {namespace}").into())
    }
}

fn interface<'a>(
    inside: &'a mut ObservedInside,
    namespace: &str,
    name: &str,
) -> Result<&'a mut ObservedInterface, Failure> {
    inside
        .interfaces
        .get_mut(name)
        .ok_or_else(|| format!("in {namespace}: no link named {name}").into())
}

/// A fake kernel shared by its backends and the test that looks at it.
#[derive(Clone, Debug, Default)]
pub struct Fake(Arc<Mutex<World>>);

impl Fake {
    pub fn new() -> Self {
        Self::default()
    }

    /// What the fake kernel holds now.
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fake with the node's own interfaces, as an operator's NICs are.
    pub fn with_interfaces<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let fake = Self::new();
        fake.world()
            .node
            .links
            .extend(names.into_iter().map(|name| ObservedLink {
                name: name.to_string(),
                kind: ObservedKind::Other("device".into()),
                alias: None,
                master: None,
                mtu: 1500,
                up: true,
                isolated: false,
                host_ipv6: true,
            }));
        fake
    }

    /// The journal since the last call.
    pub fn take_journal(&self) -> Vec<String> {
        std::mem::take(&mut self.world().journal)
    }

    /// An agent over this fake kernel.
    pub fn agent(&self, config: super::agent::AgentConfig) -> super::agent::Agent<Fake> {
        super::agent::Agent::with_backends(
            config,
            super::agent::Parts {
                links: self.clone(),
                namespaces: self.clone(),
                inside: self.clone(),
                rules: self.clone(),
                dhcp: self.clone(),
            },
            (
                neutrino_core::xtables::Backend::Nft,
                "a fake kernel".to_string(),
            ),
        )
    }
}

impl Backends for Fake {
    type Links = Fake;
    type Namespaces = Fake;
    type Inside = Fake;
    type Rules = Fake;
    type Dhcp = Fake;
}

impl Links for Fake {
    /// It keeps no track: every apply looks at everything.
    async fn touched(&self) -> Result<Option<BTreeSet<String>>, Failure> {
        Ok(None)
    }

    async fn observe(&self, only: Option<&BTreeSet<String>>) -> Result<Observed, Failure> {
        let node = &self.world().node;
        Ok(match only {
            None => node.clone(),
            Some(names) => node.only(names),
        })
    }

    async fn apply(&self, changes: &Changes) -> Applied {
        let mut world = self.world();
        let mut applied = Applied::default();
        // The real adapter's order: removals, bridges, other links, settings.
        let mut ordered: Vec<&LinkChange> = changes.links.iter().collect();
        ordered.sort_by_key(|change| match change {
            LinkChange::Delete(_) => 0,
            LinkChange::Create(link) if link.kind == LinkKind::Bridge => 1,
            LinkChange::Create(_) => 2,
            _ => 3,
        });
        for change in ordered {
            match world.link_change(change) {
                Ok(()) => applied.writes += 1,
                Err(e) => {
                    applied.failed_links.insert(change.link().to_string());
                    applied.errors.push(e);
                }
            }
        }
        for (entry, add) in changes
            .fdb_remove
            .iter()
            .map(|e| (e, false))
            .chain(changes.fdb_add.iter().map(|e| (e, true)))
        {
            if add && !world.has_link(&entry.device) {
                applied
                    .errors
                    .push(format!("adding {entry:?}: no link named {}", entry.device).into());
                continue;
            }
            world.node.fdb.retain(|e| e != entry);
            if add {
                world.node.fdb.push(entry.clone());
            }
            world.wrote(format!(
                "links: fdb {} {entry:?}",
                if add { "add" } else { "remove" }
            ));
            applied.writes += 1;
        }
        for (entry, add) in changes
            .neighbours_remove
            .iter()
            .map(|e| (e, false))
            .chain(changes.neighbours_add.iter().map(|e| (e, true)))
        {
            world.node.neighbours.retain(|e| e != entry);
            if add {
                world.node.neighbours.push(entry.clone());
            }
            world.wrote(format!(
                "links: neighbour {} {entry:?}",
                if add { "add" } else { "remove" }
            ));
            applied.writes += 1;
        }
        applied
    }
}

impl Namespaces for Fake {
    fn list(&self) -> Result<Vec<String>, Failure> {
        Ok(self.world().namespaces.keys().cloned().collect())
    }

    fn create(&self, name: &str) -> Result<(), Failure> {
        let mut world = self.world();
        if world.namespaces.contains_key(name) {
            return Err(format!("creating namespace {name}: it exists").into());
        }
        let mut inside = ObservedInside::default();
        inside
            .interfaces
            .insert("lo".into(), ObservedInterface::default());
        world.namespaces.insert(name.to_string(), inside);
        world.wrote(format!("namespaces: create {name}"));
        Ok(())
    }

    fn delete(&self, name: &str) -> Result<(), Failure> {
        let mut world = self.world();
        if world.dhcp.get(name).is_some_and(|s| s.running) {
            return Err(format!("removing namespace {name}: its DHCP server still runs").into());
        }
        if world.namespaces.remove(name).is_none() {
            return Err(format!("removing namespace {name}: no such namespace").into());
        }
        // The veth pairs with an end inside go with it.
        let pairs: Vec<String> = world
            .peers
            .iter()
            .filter(|(_, (_, ns))| ns.as_deref() == Some(name))
            .map(|(link, _)| link.clone())
            .collect();
        for link in pairs {
            world.remove_link(&link);
        }
        world.wrote(format!("namespaces: delete {name}"));
        Ok(())
    }
}

/// One fake namespace entered.
pub struct FakeNamespace {
    fake: Fake,
    name: String,
}

impl Inside for Fake {
    type Namespace = FakeNamespace;

    async fn enter(&self, name: &str) -> Result<FakeNamespace, Failure> {
        if !self.world().namespaces.contains_key(name) {
            return Err(format!("netlink socket in namespace {name}: no such namespace").into());
        }
        Ok(FakeNamespace {
            fake: self.clone(),
            name: name.to_string(),
        })
    }
}

impl InsideNamespace for FakeNamespace {
    async fn observe(&self, wanted: &InnerNamespace) -> Result<ObservedInside, Failure> {
        let mut world = self.fake.world();
        let inside = world.inside(&self.name)?;
        let names: Vec<&str> = wanted.interface_names().collect();
        Ok(ObservedInside {
            interfaces: inside
                .interfaces
                .iter()
                .filter(|(name, _)| names.contains(&name.as_str()))
                .map(|(name, i)| (name.clone(), i.clone()))
                .collect(),
            routes: inside.routes.clone(),
            forwarding: inside.forwarding.clone(),
        })
    }

    async fn apply(&self, changes: &[InsideChange]) -> Applied {
        let mut world = self.fake.world();
        let mut applied = Applied::default();
        for change in changes {
            match world.inside_change(&self.name, change) {
                Ok(()) => applied.writes += 1,
                Err(e) => {
                    applied.errors.push(e);
                    break;
                }
            }
        }
        applied
    }
}

impl Rules for Fake {
    fn sync_boundary(&self, boundary: Option<&Boundary>) -> Result<usize, Failure> {
        let mut world = self.world();
        if world.boundary.as_ref() == boundary {
            return Ok(0);
        }
        world.boundary = boundary.cloned();
        world.wrote(format!("rules: boundary {boundary:?}"));
        Ok(1)
    }

    fn sync_node(&self, plan: &SecurityPlan, bridges: &[BridgePorts]) -> Result<usize, Failure> {
        let mut world = self.world();
        let wanted = (!plan.ports.is_empty() || !bridges.is_empty())
            .then(|| format!("{plan:?} on {bridges:?}"));
        if world.rules == wanted {
            return Ok(0);
        }
        world.rules = wanted;
        world.wrote(format!("rules: node ({} ports)", plan.ports.len()));
        Ok(1)
    }

    fn sync_router(&self, router: &RouterPlan) -> Result<usize, Failure> {
        let mut world = self.world();
        if !world.namespaces.contains_key(&router.namespace) {
            return Err(format!("entering {}: no such namespace", router.namespace).into());
        }
        let wanted = format!("{router:?}");
        if world.nat.get(&router.namespace) == Some(&wanted) {
            return Ok(0);
        }
        world.nat.insert(router.namespace.clone(), wanted);
        world.wrote(format!("rules: NAT of {}", router.namespace));
        Ok(1)
    }

    fn forget_routers_except(&self, keep: &[&str]) {
        self.world().nat.retain(|ns, _| keep.contains(&ns.as_str()));
    }
}

impl DhcpServers for Fake {
    fn server_dir(&self, namespace: &str) -> PathBuf {
        PathBuf::from("/fake/dhcp").join(namespace)
    }

    fn observe(&self) -> BTreeMap<String, ObservedServer> {
        self.world().dhcp.clone()
    }

    fn apply(&self, changes: &[DhcpChange]) -> (DhcpReport, Vec<Failure>) {
        let mut world = self.world();
        let mut report = DhcpReport::default();
        let mut errors: Vec<Failure> = Vec::new();
        let mut failed = Vec::new();
        for change in changes {
            if failed.contains(&change.namespace()) {
                continue;
            }
            if let Err(e) = world.dhcp_change(change, &mut report) {
                failed.push(change.namespace());
                errors.push(Box::new(DhcpError {
                    namespace: change.namespace().to_string(),
                    what: change.what(),
                    cause: std::io::Error::other(e.to_string()),
                }));
            }
        }
        (report, errors)
    }
}
