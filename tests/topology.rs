//! The indexes that stand in for planning every node: what they say a node
//! realises is exactly what its plan holds, on the examples and on a
//! generated cluster with every kind of object.

mod support;

use std::collections::BTreeSet;

use neutrino::core::plan::{Topology, plan_node};
use neutrino::core::realisation::planned_objects;
use neutrino::core::{ClusterConfig, resolve};
use support::synthetic::{Shape, cluster, converge};

fn same_objects(snapshot: &neutrino::core::Snapshot, config: &ClusterConfig, what: &str) {
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

#[test]
fn each_example_node_realises_what_its_plan_holds() {
    let config = ClusterConfig::default();
    for name in [
        "quickstart",
        "overlapping-tenants",
        "provider-vlan",
        "three-tier",
    ] {
        let dir = support::examples::example(name);
        let snapshot = neutrino::manifest::load(&dir).unwrap().snapshot;
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
