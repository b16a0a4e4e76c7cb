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
