//! A round after a change, resolving only the namespaces it touches, asks
//! for exactly what a full round over the same view asks for, and leaves
//! the controller's kept view as a full round would build it; a change
//! that reaches past its namespaces makes the round full. An agent's part,
//! patched with ports on other nodes or resolved again only where it
//! differs, resolves and plans as the part taken and resolved in full.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::core::object::HasStatus;
use serde_json::{Value, json};

use neutrino::core::controller::Actions;
use neutrino::core::incremental::{Changed, Followed, Full, Kept, NodeView};
use neutrino::core::kinds::key_of;
use neutrino::core::realisation::{Acknowledged, AgentHealth};
use neutrino::core::scope::Index;
use neutrino::core::{ApiObject, ClusterConfig, Key, Resolution, Snapshot, for_each_kind, resolve};
use support::synthetic::{Shape, all_ready, carry_out, cluster, noted, port_beside};

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}

/// Actions as comparable values.
fn summary(actions: &Actions) -> Value {
    let mut claims: Vec<Value> = (actions.create_ip_claims.iter())
        .map(|c| json!([c.namespace(), c.name_any(), c.spec]))
        .collect();
    claims.sort_by_key(|v| v.to_string());
    let mut segments: Vec<Value> = (actions.create_segment_claims.iter())
        .map(|c| json!([c.name_any(), c.spec]))
        .collect();
    segments.sort_by_key(|v| v.to_string());
    let mut statuses = BTreeMap::new();
    for_each_kind!(K => for (key, object) in K::of(&actions.statuses) {
        statuses.insert(format!("{} {key}", K::KIND), json!(object.status()));
    });
    json!({
        "create_ip_claims": claims,
        "delete_ip_claims": actions.delete_ip_claims,
        "create_segment_claims": segments,
        "delete_segment_claims": actions.delete_segment_claims,
        "statuses": statuses,
        "finalizers": format!("{:?}", actions.finalizers),
    })
}

/// Where two summaries differ: each differing field or status, with both
/// sides.
fn differences(scoped: &Value, full: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (field, a) in scoped.as_object().unwrap() {
        let b = &full[field];
        match (a.as_object(), b.as_object()) {
            (Some(a), Some(b)) => {
                for key in a.keys().chain(b.keys()) {
                    if a.get(key) != b.get(key) {
                        out.push(format!("{key}: {:?} against {:?}", a.get(key), b.get(key)));
                    }
                }
            }
            _ if a != b => out.push(format!("{field}: {a} against {b}")),
            _ => {}
        }
    }
    out.dedup();
    out
}

/// The controller's kept view, the cluster as it last saw it, and the
/// cluster now.
struct Run {
    kept: Kept,
    seen: Snapshot,
    cluster: Snapshot,
    config: ClusterConfig,
    /// Some nodes' agents, each with its view of its node.
    parts: Vec<(String, NodeView)>,
    /// The cluster as the agents last saw it.
    followed: Snapshot,
    /// How many times an agent's view was patched rather than taken afresh.
    patched: usize,
}

type Agents = BTreeMap<String, AgentHealth>;

impl Run {
    /// Makes `change`, then runs rounds until they ask for nothing, each
    /// one scoped where the kept view allows and checked against a full
    /// round; returns why rounds were full. The agents' health goes from
    /// `before` to `agents` with the first round.
    fn settle(
        &mut self,
        what: &str,
        change: impl Fn(&mut Snapshot),
        (before, agents): (&Agents, &Agents),
    ) -> (Vec<Full>, BTreeSet<String>) {
        change(&mut self.cluster);
        // The agents see the change before the controller takes it up.
        self.agents_follow(what);
        let settled = settle(
            what,
            &mut self.kept,
            &mut self.seen,
            &mut self.cluster,
            &self.config,
            (before, agents),
        );
        self.agents_follow(what);
        settled
    }

    /// Each agent's view, brought up to date from what changed since it
    /// last looked, is the view taken afresh: the same part, resolved alike
    /// (but for subnets' address counts, which a patch leaves as they
    /// were: they place nothing), the same plan and digest.
    fn agents_follow(&mut self, what: &str) {
        let index = Index::new(&self.cluster);
        let (objects, ip_claims) = noted(&self.followed, &self.cluster);
        self.followed = self.cluster.clone();
        for (node, view) in &mut self.parts {
            let me = self.config.node(node).unwrap();
            let changed = (&objects, &ip_claims);
            let how = view.follow(&index, &self.cluster, &self.config, me, changed);
            let fresh = NodeView::new(&index, &self.cluster, &self.config, me);
            let part = Changed::between(view.snapshot(), fresh.snapshot());
            assert!(
                part.objects.is_empty() && part.ip_claims.is_empty(),
                "{what}: {node}'s part ({how:?}) differs in {:?} {:?}",
                part.objects,
                part.ip_claims
            );
            if how == Followed::Patched {
                self.patched += 1;
            }
            let (kept, full) = (view.resolved().resolution(), fresh.resolved().resolution());
            assert!(
                uncounted(kept) == uncounted(full),
                "{what}: {node}'s part ({how:?}) resolves differently"
            );
            assert_eq!(
                view.plan(),
                fresh.plan(),
                "{what}: {node} plans differently ({how:?})"
            );
            assert_eq!(
                view.realised(),
                fresh.realised(),
                "{what}: {node}'s digest ({how:?})"
            );
        }
    }
}

/// A resolution without its subnets' address counts.
fn uncounted(resolution: &Resolution) -> Resolution {
    let mut resolution = resolution.clone();
    for subnet in resolution.subnets.values_mut().flatten() {
        (subnet.used, subnet.free) = (0, 0);
    }
    resolution
}

/// Agents on every tenth node, each with its view of its node.
fn agents_of(cluster: &Snapshot, config: &ClusterConfig) -> Vec<(String, NodeView)> {
    let index = Index::new(cluster);
    (config.nodes.iter().step_by(10))
        .map(|node| {
            (
                node.name.clone(),
                NodeView::new(&index, cluster, config, node),
            )
        })
        .collect()
}

fn settle(
    what: &str,
    kept: &mut Kept,
    seen: &mut Snapshot,
    now_: &mut Snapshot,
    config: &ClusterConfig,
    (before, agents): (&Agents, &Agents),
) -> (Vec<Full>, BTreeSet<String>) {
    let mut fulls = Vec::new();
    let mut written = BTreeSet::new();
    for round in 0..10 {
        let mut changed = Changed::between(seen, now_);
        if round == 0 {
            let nodes = before.keys().chain(agents.keys());
            changed.nodes = nodes
                .filter(|n| before.get(*n) != agents.get(*n))
                .cloned()
                .collect();
        }
        *seen = now_.clone();
        let (fresh, expected) = Kept::full(
            now_.clone(),
            config.clone(),
            agents,
            kept.acknowledged(agents),
            &now(),
        );
        let actions = match kept.after(now_, &changed, agents, &now()) {
            Ok(scoped) => {
                let differences = differences(&summary(&scoped.actions), &summary(&expected));
                assert!(
                    differences.is_empty(),
                    "{what}, round {round}: a round over {:?} differs from a full one in {differences:#?}",
                    scoped.namespaces
                );
                assert!(
                    kept.resolution() == fresh.resolution(),
                    "{what}, round {round}: the kept resolution differs"
                );
                scoped.actions
            }
            Err(why) => {
                fulls.push(why);
                *kept = fresh.clone();
                expected
            }
        };
        assert!(
            kept.placement() == fresh.placement(),
            "{what}, round {round}: the kept placement differs"
        );
        if actions.is_empty() {
            return (fulls, written);
        }
        written.extend(statuses_in(&actions.statuses));
        carry_out(now_, actions);
    }
    panic!("{what}: the rounds did not settle in 10");
}

/// The objects whose status `statuses` sets, as `Kind namespace/name`.
fn statuses_in(statuses: &Snapshot) -> Vec<String> {
    let ids = neutrino::lab::cluster::ids(statuses).into_iter();
    ids.map(|(kind, key)| format!("{kind} {key}")).collect()
}

/// Gives port `key` the one address pair `cidr`.
fn give_pair(s: &mut Snapshot, key: &Key, cidr: &str) {
    let port = Arc::make_mut(s.ports.get_mut(key).unwrap());
    port.spec.allowed_address_pairs = vec![neutrino::api::AddressPair {
        ip_address: cidr.into(),
        mac_address: None,
    }];
    bump(port);
}

fn bump<K: ApiObject>(object: &mut K) {
    let meta = object.meta_mut();
    meta.generation = Some(meta.generation.unwrap_or(1) + 1);
}

#[test]
fn a_round_over_the_namespaces_a_change_touches_asks_for_what_a_full_one_does() {
    let (mut cluster, config) = cluster(Shape {
        ports: 1_600,
        nodes: 60,
    });
    let agents = {
        support::synthetic::converge(&mut cluster, &config);
        let resolution = resolve(&cluster, &config);
        all_ready(&cluster, &resolution, &config)
    };
    let (kept, settled) = Kept::full(
        cluster.clone(),
        config.clone(),
        &agents,
        Acknowledged::default(),
        &now(),
    );
    assert!(settled.is_empty(), "the generated cluster settled");
    let mut run = Run {
        kept,
        seen: cluster.clone(),
        parts: agents_of(&cluster, &config),
        followed: cluster.clone(),
        patched: 0,
        cluster,
        config,
    };
    let port = |s: &Snapshot, i: usize| s.ports.keys().nth(i).unwrap().clone();

    // A port bound to node-1, whose agent follows.
    let on_node_1 = |s: &Snapshot| {
        (s.ports.iter())
            .find(|(_, p)| p.spec.node_name.as_deref() == Some("node-1"))
            .map(|(k, _)| k.clone())
            .unwrap()
    };
    type Change = Box<dyn Fn(&mut Snapshot)>;
    let scoped: Vec<(&str, Change)> = vec![
        (
            "a port added on node-39",
            Box::new(move |s| {
                let added = port_beside(s, &port(s, 0), "added", 39);
                s.ports.insert(key_of(&added), Arc::new(added));
            }),
        ),
        (
            "a port added on node-38 beside one of node-1's",
            Box::new(move |s| {
                let added = port_beside(s, &on_node_1(s), "beside-node-1", 38);
                s.ports.insert(key_of(&added), Arc::new(added));
            }),
        ),
        (
            "an address pair given to the port beside node-1's",
            Box::new(move |s| {
                let key = Key::new(&on_node_1(s).namespace, "beside-node-1");
                give_pair(s, &key, "192.0.2.0/28");
            }),
        ),
        (
            "a second port added on node-1 beside its own",
            Box::new(move |s| {
                let added = port_beside(s, &on_node_1(s), "second-on-node-1", 1);
                s.ports.insert(key_of(&added), Arc::new(added));
            }),
        ),
        (
            "an address pair given to node-1's second port",
            Box::new(move |s| {
                let key = Key::new(&on_node_1(s).namespace, "second-on-node-1");
                give_pair(s, &key, "192.0.2.16/28");
            }),
        ),
        (
            "two ports added at once on node-1 and beside it on node-38",
            Box::new(move |s| {
                for (name, node) in [("third-on-node-1", 1), ("again-beside-node-1", 38)] {
                    let added = port_beside(s, &on_node_1(s), name, node);
                    s.ports.insert(key_of(&added), Arc::new(added));
                }
            }),
        ),
        (
            "the port beside node-1's deleted",
            Box::new(move |s| {
                s.ports
                    .remove(&Key::new(&on_node_1(s).namespace, "beside-node-1"));
            }),
        ),
        (
            "a port moved to node-40",
            Box::new(move |s| {
                let key = port(s, 5);
                let port = Arc::make_mut(s.ports.get_mut(&key).unwrap());
                port.spec.node_name = Some("node-40".into());
                bump(port);
            }),
        ),
        (
            "a port deleted",
            Box::new(move |s| {
                let key = port(s, 20);
                s.ports.remove(&key);
            }),
        ),
        (
            "a port asking for an address another holds",
            Box::new(move |s| {
                let (taken, key) = (port(s, 30), port(s, 31));
                let address = s.ports[&taken].status.as_ref().unwrap().fixed_ips[0].clone();
                let port = Arc::make_mut(s.ports.get_mut(&key).unwrap());
                port.spec.fixed_ips = vec![neutrino::api::FixedIP {
                    subnet: address.subnet.clone(),
                    ip_address: Some(address.ip_address.clone()),
                }];
                bump(port);
            }),
        ),
        (
            "a web group naming itself as remote",
            Box::new(|s| {
                let key = Key::new("tenant-2", "web");
                let group = Arc::make_mut(s.security_groups.get_mut(&key).unwrap());
                group.spec.rules[0].remote_ip_prefix = None;
                group.spec.rules[0].remote_group = Some("web".into());
                bump(group);
            }),
        ),
        (
            "a subnet's DNS servers changed",
            Box::new(|s| {
                let key = Key::new("tenant-1", "net-13-v4");
                let subnet = Arc::make_mut(s.subnets.get_mut(&key).unwrap());
                subnet.spec.dns_nameservers = vec!["192.0.2.53".into()];
                bump(subnet);
            }),
        ),
        (
            "DHCP turned on for a subnet",
            Box::new(|s| {
                let key = Key::new("tenant-1", "net-15-v4");
                let subnet = Arc::make_mut(s.subnets.get_mut(&key).unwrap());
                assert!(!subnet.spec.enable_dhcp);
                subnet.spec.enable_dhcp = true;
                bump(subnet);
            }),
        ),
        (
            "a rule given to the empty group",
            Box::new(|s| {
                let web = s.security_groups[&Key::new("tenant-2", "web")].spec.rules[0].clone();
                let key = Key::new("tenant-2", "empty");
                let group = Arc::make_mut(s.security_groups.get_mut(&key).unwrap());
                group.spec.rules = vec![web];
                bump(group);
            }),
        ),
        (
            "a network added in a new namespace",
            Box::new(|s| {
                let mut network = (*s.networks[&Key::new("tenant-1", "net-10")]).clone();
                network.metadata.namespace = Some("tenant-new".into());
                network.metadata.finalizers = None;
                network.status = None;
                s.networks.insert(key_of(&network), Arc::new(network));
            }),
        ),
        (
            "a floating IP added for a port",
            Box::new(move |s| {
                let target = port(s, 50);
                let mut fip = (**s.floating_ips.values().next().unwrap()).clone();
                fip.metadata.name = Some("added".into());
                fip.metadata.namespace = Some(target.namespace.clone());
                fip.spec.port = Some(target.name.clone());
                fip.status = None;
                s.floating_ips.insert(key_of(&fip), Arc::new(fip));
            }),
        ),
        (
            "a router's static route added",
            Box::new(|s| {
                let key = Key::new("tenant-3", "edge");
                let router = Arc::make_mut(s.routers.get_mut(&key).unwrap());
                router.spec.routes = vec![neutrino::api::Route {
                    destination: "198.51.100.0/24".into(),
                    nexthop: "10.0.3.9".into(),
                }];
                bump(router);
            }),
        ),
    ];
    for (what, change) in scoped {
        let patched = run.patched;
        let (fulls, written) = run.settle(what, change, (&agents, &agents));
        assert_eq!(fulls, vec![], "{what}: no round needed to be full");
        if what.contains("node-1") {
            // Node-1's agent takes the port in as it is.
            assert!(run.patched > patched, "{what}: no agent's view was patched");
        }
        if what == "a port added on node-39" {
            // Its node's other objects stay realised: their agent realised
            // them as they are, so their statuses are not written.
            let ports: Vec<&String> = written.iter().filter(|w| w.starts_with("Port ")).collect();
            assert_eq!(ports, ["Port tenant-0/added"], "{what}: wrote {written:?}");
        }
    }

    // An agent that fails: its node's objects say so, and nothing else.
    let mut failing = agents.clone();
    failing.insert("node-7".into(), AgentHealth::Failed("out of space".into()));
    let (fulls, _) = run.settle("node-7 failing", |_| {}, (&agents, &failing));
    assert_eq!(fulls, vec![]);

    type Expected = fn(&Full) -> bool;
    let full: Vec<(&str, Change, Expected)> = vec![
        (
            "a router added",
            Box::new(|s| {
                let mut router = (*s.routers[&Key::new("tenant-4", "edge")]).clone();
                router.metadata.name = Some("second".into());
                router.spec.interfaces.clear();
                router.status = None;
                s.routers.insert(key_of(&router), Arc::new(router));
            }),
            |f| matches!(f, Full::Schedules(_)),
        ),
        (
            "the external subnet's DNS servers changed",
            Box::new(|s| {
                let key = Key::new("infra", "public-v4");
                let subnet = Arc::make_mut(s.subnets.get_mut(&key).unwrap());
                subnet.spec.dns_nameservers = vec!["192.0.2.53".into()];
                bump(subnet);
            }),
            |f| matches!(f, Full::Shared { .. }),
        ),
        (
            "a network deleted while its ports stay",
            Box::new(|s| {
                let key = Key::new("tenant-5", "net-50");
                let network = Arc::make_mut(s.networks.get_mut(&key).unwrap());
                network.metadata.deletion_timestamp = Some(now());
            }),
            |f| matches!(f, Full::Deleting(_)),
        ),
    ];
    for (what, change, why) in full {
        let (fulls, _) = run.settle(what, change, (&failing, &failing));
        assert!(fulls.iter().any(why), "{what}: full rounds for {fulls:?}");
    }
}
