//! The dataplane reconciler against a real kernel, in namespaces of its own.

mod support;

use std::path::Path;

use neutrino::core::plan::{NodePlan, plan_node};
use neutrino::core::reconcile::diff;
use neutrino::core::{ClusterConfig, resolve};
use neutrino::dataplane::netlink::Netlink;
use neutrino::dataplane::netns;
use support::{Namespaces, require_root};

fn plan(example: &str, node: &str) -> NodePlan {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(example);
    let snapshot = neutrino::manifest::load(&dir).unwrap().snapshot;
    let config = ClusterConfig::default();
    plan_node(
        &resolve(&snapshot, &config),
        &config,
        config.node(node).unwrap(),
    )
}

#[tokio::test]
async fn a_resync_with_nothing_to_do_writes_nothing() {
    require_root();
    let mut spaces = Namespaces::new("l2");
    let node = spaces.create("node");
    let mut plan = plan("quickstart", "node-1");
    for dhcp in &mut plan.dhcp {
        dhcp.namespace = spaces.create(&dhcp.namespace);
    }
    let kernel = Netlink::connect(Some(&node)).await.unwrap();
    let first = diff(&kernel.observe().await.unwrap(), &plan);
    let errors = kernel.apply(&first).await;
    assert!(errors.is_empty(), "{errors:#?}");
    let before = kernel.writes();
    let second = diff(&kernel.observe().await.unwrap(), &plan);
    assert!(second.is_empty(), "{second:#?}");
    assert_eq!(kernel.writes(), before);
    assert!(netns::exists(&node));
}

/// The rules of neutrino's chains in `namespace`, both families.
fn our_rules(namespace: &str) -> Vec<String> {
    support::saved_rules(namespace)
        .into_iter()
        .map(|(_, line)| line)
        .filter(|l| l.starts_with("-A neutrino-"))
        .collect()
}

#[test]
fn the_firewall_follows_bridges_after_the_last_port_goes() {
    require_root();
    let mut spaces = Namespaces::new("fw");
    let node = spaces.create("node");
    let state = std::env::temp_dir().join(format!("neutrino-{}", spaces.prefix()));
    let firewall = neutrino::dataplane::iptables::Firewall::new(&state);
    let mut plan = plan("quickstart", "node-1");
    let bridges: Vec<String> = plan.bridges.iter().map(|b| b.name.clone()).collect();
    firewall
        .sync_node(Some(&node), &plan.security, &bridges)
        .unwrap();
    let bridge = &bridges[0];
    assert!(our_rules(&node).iter().any(|r| r.contains(bridge)));

    // The port goes first; its network's bridge a round later, as when a
    // namespace is emptied: the bridge's rules go with it.
    plan.security.ports.clear();
    plan.security.ipsets.clear();
    firewall
        .sync_node(Some(&node), &plan.security, &bridges)
        .unwrap();
    assert!(our_rules(&node).iter().any(|r| r.contains(bridge)));
    firewall
        .sync_node(Some(&node), &plan.security, &[])
        .unwrap();
    assert_eq!(our_rules(&node), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&state);
}
