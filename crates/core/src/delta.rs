//! Which of a node's links can differ from its plan after a change: those
//! whose desired state differs between the plan last applied and the new
//! one, and those the kernel says changed since. When the last apply left
//! the kernel as its plan wanted, comparing only these links and their
//! entries ([`crate::reconcile::diff_only`]) finds every change a full
//! comparison finds, at the cost of the change rather than of the node.

use std::collections::{BTreeSet, HashMap};

use super::plan::{Bridge, DhcpPlan, NodePlan, PortPlan, RouterLegPlan, Uplink};
use crate::Key;

/// What one wanted link's state comes from.
#[derive(PartialEq)]
enum Part<'a> {
    Bridge(&'a Bridge),
    Uplink(&'a Uplink),
    Port(&'a PortPlan),
    /// A port's other end, which waits in the node for its workload.
    Peer(&'a PortPlan),
    Dhcp(&'a DhcpPlan),
    Leg(&'a RouterLegPlan, &'a str, &'a Key),
}

impl<'a> Part<'a> {
    /// The links that go with this one: the bridge it is on, and a port's
    /// other end.
    fn related(&self) -> Vec<&'a str> {
        match self {
            Part::Bridge(_) => vec![],
            Part::Uplink(u) => vec![u.bridge.as_str()],
            Part::Port(p) | Part::Peer(p) => {
                vec![p.bridge.as_str(), p.interface.as_str(), p.peer.as_str()]
            }
            Part::Dhcp(d) => vec![d.bridge.as_str()],
            Part::Leg(l, _, _) => vec![l.bridge.as_str()],
        }
    }
}

/// Every link the plan wants (and every port's other end), by name.
fn parts(plan: &NodePlan) -> HashMap<&str, Part<'_>> {
    let mut parts = HashMap::new();
    for bridge in &plan.bridges {
        parts.insert(bridge.name.as_str(), Part::Bridge(bridge));
    }
    for uplink in &plan.uplinks {
        parts.insert(uplink.name.as_str(), Part::Uplink(uplink));
    }
    for port in &plan.ports {
        parts.insert(port.interface.as_str(), Part::Port(port));
        parts.insert(port.peer.as_str(), Part::Peer(port));
    }
    for dhcp in &plan.dhcp {
        parts.insert(dhcp.bridge_port.as_str(), Part::Dhcp(dhcp));
    }
    for router in &plan.routers {
        for leg in router.interfaces.iter().chain(&router.gateway) {
            parts.insert(
                leg.bridge_port.as_str(),
                Part::Leg(leg, &router.namespace, &router.router),
            );
        }
    }
    parts
}

/// The devices whose entries differ between two lists, each grouped by
/// device in the order the planner gives them.
fn devices_differing<'a, T: PartialEq>(
    before: &'a [T],
    now: &'a [T],
    device: impl Fn(&T) -> &str,
    out: &mut BTreeSet<String>,
) {
    if before == now {
        return;
    }
    let group = |entries: &'a [T]| {
        let mut groups: HashMap<&str, Vec<&T>> = HashMap::new();
        for entry in entries {
            groups.entry(device(entry)).or_default().push(entry);
        }
        groups
    };
    let (before, now) = (group(before), group(now));
    for (name, entries) in &now {
        if before.get(name) != Some(entries) {
            out.insert(name.to_string());
        }
    }
    out.extend(
        before
            .keys()
            .filter(|name| !now.contains_key(*name))
            .map(|name| name.to_string()),
    );
}

/// The links (by name) that may differ from `plan` when the kernel was as
/// `before` wanted and only the links `touched` changed since: whatever
/// differs between the two plans, and the touched ones; each with the
/// bridge it is on, and a port's two ends together.
pub fn affected(before: &NodePlan, plan: &NodePlan, touched: BTreeSet<String>) -> BTreeSet<String> {
    let (old, new) = (parts(before), parts(plan));
    let mut names = touched;
    for (name, part) in &new {
        if old.get(name) != Some(part) {
            names.insert(name.to_string());
        }
    }
    names.extend(
        old.keys()
            .filter(|name| !new.contains_key(*name))
            .map(|name| name.to_string()),
    );
    devices_differing(&before.fdb, &plan.fdb, |e| &e.device, &mut names);
    devices_differing(
        &before.neighbours,
        &plan.neighbours,
        |e| &e.device,
        &mut names,
    );
    let mut closed = names.clone();
    for name in &names {
        for part in [old.get(name.as_str()), new.get(name.as_str())]
            .into_iter()
            .flatten()
        {
            closed.extend(part.related().into_iter().map(str::to_string));
        }
    }
    closed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{after, quickstart_plan};
    use crate::reconcile::{Observed, diff, diff_only};

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn the_same_plan_with_nothing_touched_affects_nothing() {
        let plan = quickstart_plan("node-1");
        assert_eq!(affected(&plan, &plan, BTreeSet::new()), set(&[]));
    }

    #[test]
    fn a_new_port_brings_its_other_end_and_its_bridge() {
        let before = quickstart_plan("node-1");
        let mut plan = before.clone();
        let mut port = plan.ports[0].clone();
        port.interface = "ntp-new".into();
        port.peer = "ntw-new".into();
        plan.ports.push(port.clone());
        assert_eq!(
            affected(&before, &plan, BTreeSet::new()),
            set(&["ntp-new", "ntw-new", &port.bridge])
        );
    }

    #[test]
    fn a_remote_port_touches_its_vxlan_link_alone() {
        let before = quickstart_plan("node-1");
        let mut plan = before.clone();
        let mut entry = plan.fdb[0].clone();
        entry.mac.0[5] ^= 0xff;
        plan.fdb.push(entry.clone());
        let device = entry.device.clone();
        let affected = affected(&before, &plan, BTreeSet::new());
        assert!(affected.contains(&device), "{affected:?}");
        assert!(plan.ports.iter().all(|p| !affected.contains(&p.interface)));
    }

    /// From a kernel as `before` wanted, the part finds what the whole finds.
    #[test]
    fn the_part_finds_the_changes_the_whole_finds() {
        let before = quickstart_plan("node-1");
        let kernel = after(&Observed::default(), &before);
        let mut plan = before.clone();
        plan.ports.remove(0);
        let mut entry = plan.fdb[0].clone();
        entry.mac.0[5] ^= 0xff;
        plan.fdb.push(entry);
        plan.bridges[0].mtu -= 10;
        let names = affected(&before, &plan, BTreeSet::new());
        assert_eq!(
            diff_only(&kernel.only(&names), &plan, &names),
            diff(&kernel, &plan)
        );
    }
}
