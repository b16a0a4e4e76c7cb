//! The indexes that stand in for planning every node, and the part of the
//! cluster an agent plans from: what they say a node realises is exactly
//! what its plan holds, and the part gives the very plan the whole does, on
//! the examples and on a generated cluster with every kind of object.

mod support;

use std::collections::BTreeSet;

use neutrino::core::plan::{Topology, plan_node};
use neutrino::core::realisation::{planned_objects, realised_digest};
use neutrino::core::status::ready_only;
use neutrino::core::{ClusterConfig, Snapshot, resolve, scope};
use support::synthetic::{Shape, cluster, converge};

fn same_objects(snapshot: &Snapshot, config: &ClusterConfig, what: &str) {
    let resolution = resolve(snapshot, config);
    let topology = Topology::new(&resolution, config);
    for node in &config.nodes {
        assert_eq!(
            topology.objects_on(&node.name),
            planned_objects(&topology.plan(node)),
            "{what}, {}",
            node.name
        );
    }
}

/// The examples, as the controller leaves them once settled.
fn settled_examples(config: &ClusterConfig) -> Vec<(&'static str, Snapshot)> {
    [
        "quickstart",
        "overlapping-tenants",
        "provider-vlan",
        "three-tier",
    ]
    .into_iter()
    .map(|name| {
        let dir = support::examples::example(name);
        let mut snapshot = neutrino::manifest::load(&dir).unwrap().snapshot;
        converge(&mut snapshot, config);
        (name, snapshot)
    })
    .collect()
}

#[test]
fn each_example_node_realises_what_its_plan_holds() {
    let config = ClusterConfig::default();
    for (name, snapshot) in settled_examples(&config) {
        same_objects(&snapshot, &config, name);
    }
}

#[test]
fn each_generated_node_realises_what_its_plan_holds() {
    let (mut snapshot, config) = cluster(Shape {
        ports: 1_000,
        nodes: 40,
    });
    converge(&mut snapshot, &config);
    same_objects(&snapshot, &config, "1,000 ports on 40 nodes");

    // Every kind is there and ready, so the comparison covers each.
    let resolution = resolve(&snapshot, &config);
    assert!(
        resolution.problems().is_empty(),
        "{:?}",
        resolution.problems()
    );
    let topology = Topology::new(&resolution, &config);
    let kinds: BTreeSet<_> = config
        .nodes
        .iter()
        .flat_map(|n| topology.objects_on(&n.name))
        .map(|id| id.kind)
        .collect();
    assert_eq!(kinds.len(), 6, "{kinds:?}");

    // Each port is planned on its own node, with its network's bridge, and
    // every other node of that network forwards its MAC there.
    let plans: Vec<_> = config.nodes.iter().map(|n| topology.plan(n)).collect();
    let planned: usize = plans.iter().map(|p| p.ports.len()).sum();
    assert_eq!(planned, snapshot.ports.len());
    for plan in &plans {
        for port in &plan.ports {
            assert!(plan.bridges.iter().any(|b| b.name == port.bridge));
            for other in plans.iter().filter(|o| o.node != plan.node) {
                let carries = other.bridges.iter().any(|b| b.name == port.bridge);
                let forwards = other
                    .fdb
                    .iter()
                    .any(|f| f.mac == port.mac && f.node == plan.node);
                assert_eq!(carries, forwards, "{} on {}", port.port, other.node);
            }
        }
    }
    // The one-node entry point plans the same.
    let node = &config.nodes[7];
    assert_eq!(plan_node(&resolution, &config, node), plans[7]);
}

/// What each node's agent plans from its part of the cluster is what it
/// would plan from the whole, down to the digest it reports.
fn same_plan_from_the_part(snapshot: &Snapshot, config: &ClusterConfig, what: &str) {
    let whole = ready_only(snapshot);
    let resolution = resolve(&whole, config);
    let topology = Topology::new(&resolution, config);
    for node in &config.nodes {
        let wanted = topology.plan(node);
        let part = ready_only(&scope::for_node(snapshot, &node.name));
        let planned = plan_node(&resolve(&part, config), config, node);
        assert_eq!(planned, wanted, "{what}, {}", node.name);
        let objects = planned_objects(&planned);
        assert_eq!(
            realised_digest(&objects, &part),
            realised_digest(&objects, &whole),
            "{what}, {}",
            node.name
        );
    }
}

#[test]
fn each_example_node_plans_the_same_from_its_part() {
    let config = ClusterConfig::default();
    for (name, snapshot) in settled_examples(&config) {
        same_plan_from_the_part(&snapshot, &config, name);
    }
}

#[test]
fn each_generated_node_plans_the_same_from_its_part() {
    let (mut snapshot, config) = cluster(Shape {
        ports: 1_000,
        nodes: 40,
    });
    converge(&mut snapshot, &config);
    same_plan_from_the_part(&snapshot, &config, "1,000 ports on 40 nodes");
}

#[test]
fn each_generated_node_plans_the_same_from_its_part_with_a_tunnelled_external_network() {
    // Every gateway leg and floating IP on it is then an endpoint with FDB
    // entries on every node that carries it.
    let (mut snapshot, config) = cluster(Shape {
        ports: 1_000,
        nodes: 40,
    });
    let public = std::sync::Arc::make_mut(
        snapshot
            .networks
            .get_mut(&neutrino::core::Key::new("infra", "public"))
            .unwrap(),
    );
    public.spec.network_type = neutrino::api::NetworkType::Vxlan;
    public.spec.physical_network = None;
    converge(&mut snapshot, &config);
    same_plan_from_the_part(&snapshot, &config, "a VXLAN external network");
}

#[test]
fn a_node_s_part_leaves_out_the_namespaces_it_has_nothing_in() {
    // 25 namespaces of 160 ports; a node with 10 ports touches at most 10.
    let (mut snapshot, config) = cluster(Shape {
        ports: 4_000,
        nodes: 400,
    });
    converge(&mut snapshot, &config);
    // Routers go to the first nodes (fewest routers, ties to the first);
    // this one holds none, so it does not carry the external network.
    let node = "node-399";
    let namespaces = |s: &Snapshot| -> BTreeSet<String> {
        s.ports.keys().map(|k| k.namespace.clone()).collect()
    };
    let own: BTreeSet<String> = snapshot
        .ports
        .iter()
        .filter(|(_, p)| p.spec.node_name.as_deref() == Some(node))
        .map(|(k, _)| k.namespace.clone())
        .collect();
    assert!(
        snapshot
            .routers
            .values()
            .all(|r| r.status.as_ref().unwrap().node.as_deref() != Some(node))
    );
    let part = scope::for_node(&snapshot, node);
    assert!(own.len() < 25, "{own:?}");
    assert!(
        namespaces(&part).len() <= own.len() + 1,
        "{:?} for ports in {own:?}",
        namespaces(&part)
    );
    assert!(part.ports.len() < snapshot.ports.len() / 2);
}

/// A change that does not reach a node's part leaves the part as it was,
/// so the agent may skip it; each kind of change reaches some nodes and
/// not others. An index kept through the change is the one made afresh.
#[test]
fn a_change_that_does_not_reach_a_node_s_part_leaves_it_as_it_was() {
    use neutrino::core::kinds::key_of;
    use neutrino::core::{Key, Kind, ObjectId};
    use support::synthetic::port_beside;

    // Five ports a node, so that most nodes hold few namespaces.
    let (mut before, config) = cluster(Shape {
        ports: 2_000,
        nodes: 400,
    });
    converge(&mut before, &config);
    let port = |i: usize| {
        let key = before.ports.keys().nth(i).unwrap().clone();
        ObjectId::new(Kind::Port, key)
    };
    type Change = Box<dyn Fn(&mut Snapshot) -> Vec<ObjectId>>;
    let changes: Vec<(&str, Change)> = vec![
        ("a port added on node-39", {
            let beside = port(0).key;
            Box::new(move |s| {
                let added = port_beside(s, &beside, "added", 39);
                let key = key_of(&added);
                s.ports.insert(key.clone(), std::sync::Arc::new(added));
                vec![ObjectId::new(Kind::Port, key)]
            })
        }),
        ("a port moved to node-40", {
            let id = port(5);
            Box::new(move |s| {
                std::sync::Arc::make_mut(s.ports.get_mut(&id.key).unwrap())
                    .spec
                    .node_name = Some("node-40".into());
                vec![id.clone()]
            })
        }),
        ("a port deleted, with its claims", {
            let id = port(20);
            Box::new(move |s| {
                s.ports.remove(&id.key);
                s.ip_claims.retain(|_, c| c.spec.holder.name != id.key.name);
                vec![id.clone()]
            })
        }),
        ("a port joins the web group", {
            let id = port(301);
            Box::new(move |s| {
                std::sync::Arc::make_mut(s.ports.get_mut(&id.key).unwrap())
                    .spec
                    .security_groups = vec!["default".into(), "web".into()];
                vec![id.clone()]
            })
        }),
        ("a web group naming itself as remote", {
            Box::new(|s| {
                let key = Key::new("tenant-2", "web");
                let group = std::sync::Arc::make_mut(s.security_groups.get_mut(&key).unwrap());
                group.spec.rules[0].remote_ip_prefix = None;
                group.spec.rules[0].remote_group = Some("web".into());
                vec![ObjectId::new(Kind::SecurityGroup, key)]
            })
        }),
        ("a subnet added to a network", {
            Box::new(|s| {
                let key = Key::new("tenant-1", "net-13-v4");
                let mut subnet = (*s.subnets[&key]).clone();
                subnet.metadata.name = Some("net-13-more".into());
                subnet.spec.cidr = "10.200.0.0/24".into();
                subnet.status = None;
                let key = key_of(&subnet);
                s.subnets.insert(key.clone(), std::sync::Arc::new(subnet));
                vec![ObjectId::new(Kind::Subnet, key)]
            })
        }),
        ("a floating IP added for a port", {
            let id = port(50);
            Box::new(move |s| {
                let mut fip = (**s.floating_ips.values().next().unwrap()).clone();
                fip.metadata.name = Some("added".into());
                fip.metadata.namespace = Some(id.key.namespace.clone());
                fip.spec.port = Some(id.key.name.clone());
                fip.status = None;
                let key = key_of(&fip);
                s.floating_ips.insert(key.clone(), std::sync::Arc::new(fip));
                vec![ObjectId::new(Kind::FloatingIP, key)]
            })
        }),
        ("a router moved to node-38", {
            Box::new(|s| {
                let key = Key::new("tenant-3", "edge");
                let router = std::sync::Arc::make_mut(s.routers.get_mut(&key).unwrap());
                router.status.as_mut().unwrap().node = Some("node-38".into());
                vec![ObjectId::new(Kind::Router, key)]
            })
        }),
    ];
    let index = scope::Index::new(&before);
    for (what, change) in changes {
        let mut after = before.clone();
        let changed = change(&mut after);
        let mut kept = scope::Index::new(&before);
        for id in &changed {
            kept.set(id, after.object(id).as_ref());
        }
        for key in before.ip_claims.keys() {
            if !after.ip_claims.contains_key(key) {
                kept.set_ip_claim(key, None);
            }
        }
        assert!(
            kept == scope::Index::new(&after),
            "{what}: the kept index differs"
        );
        let (mut reached, mut unreached) = (0, 0);
        // A sample of the nodes, and those the changes name.
        let sample = config.nodes.iter().step_by(8).chain(&config.nodes[37..40]);
        for node in sample {
            let (part, reach) = scope::part_of(&index, &before, &node.name);
            let now = scope::part_of(&kept, &after, &node.name).0;
            let reaches = changed
                .iter()
                .any(|id| reach.reaches(id, after.object(id).as_ref()));
            if reaches {
                reached += 1;
            } else {
                unreached += 1;
                // Compared as text, and not printed: a part runs to megabytes.
                assert!(
                    format!("{now:?}") == format!("{part:?}"),
                    "{what}: {} was not reached, but its part changed",
                    node.name
                );
            }
        }
        assert!(
            reached > 0 && unreached > 0,
            "{what}: {reached} nodes reached, {unreached} not"
        );
    }
}
