//! The dataplane reconciler against a real kernel, in namespaces of its own.

mod support;

use std::path::Path;

use neutrino::core::plan::{NodePlan, plan_node};
use neutrino::core::reconcile::diff;
use neutrino::core::xtables::{Backend, Choice};
use neutrino::core::{ClusterConfig, resolve};
use neutrino::dataplane::agent::{Agent, AgentConfig};
use neutrino::dataplane::iptables::Firewall;
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
    let firewall = Firewall::new(&state, Backend::Nft);
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

fn saved(namespace: &str, backend: Backend) -> String {
    [false, true]
        .into_iter()
        .map(|v6| {
            let output = netns::command(namespace, &backend.program(v6, "save"))
                .unwrap()
                .output()
                .unwrap();
            String::from_utf8_lossy(&output.stdout).into_owned()
        })
        .collect()
}

fn our_chains(saved: &str) -> Vec<String> {
    saved
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| c.starts_with("neutrino-") || c.starts_with("nt-"))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn the_agent_writes_through_the_hosts_iptables_backend_only() {
    require_root();
    let mut spaces = Namespaces::new("xt");
    let node = spaces.create("node");
    let state = std::env::temp_dir().join(format!("neutrino-{}", spaces.prefix()));
    // The host's own rules are legacy ones.
    for rule in [
        "-N HOST-CHAIN",
        "-A HOST-CHAIN -j RETURN",
        "-A FORWARD -s 10.9.9.9/32 -j HOST-CHAIN",
        "-A INPUT -p tcp --dport 22 -j ACCEPT",
    ] {
        let status = netns::command(&node, "iptables-legacy")
            .unwrap()
            .args(rule.split_whitespace())
            .status()
            .unwrap();
        assert!(status.success(), "iptables-legacy {rule}");
    }
    let host_rules = |saved: &str| -> Vec<String> {
        saved
            .lines()
            .filter(|l| l.starts_with("-A ") && !l.contains("neutrino-") && !l.contains(" nt-"))
            .map(str::to_string)
            .collect()
    };
    let before = host_rules(&saved(&node, Backend::Legacy));
    assert_eq!(before.len(), 3, "{before:?}");

    // An earlier run wrote through nft.
    let mut plan = plan("quickstart", "node-1");
    plan.dhcp.clear();
    let bridges: Vec<String> = plan.bridges.iter().map(|b| b.name.clone()).collect();
    Firewall::new(state.join("firewall"), Backend::Nft)
        .sync_node(Some(&node), &plan.security, &bridges)
        .unwrap();
    assert!(!our_chains(&saved(&node, Backend::Nft)).is_empty());

    // The agent finds the host on legacy, moves there, and leaves nothing in nft.
    let agent = Agent::new(AgentConfig {
        netns: Some(node.clone()),
        namespace_prefix: format!("{node}-"),
        state_dir: state.clone(),
        iptables: Choice::Auto,
    })
    .await
    .unwrap();
    assert_eq!(
        agent.iptables(),
        (Backend::Legacy, "legacy holds 3 of the host's rules, nft 0")
    );
    let report = agent.apply(&plan).await;
    let _ = std::fs::remove_dir_all(&state);
    assert!(report.is_clean(), "{:?}", report.errors);
    assert_eq!(
        our_chains(&saved(&node, Backend::Nft)),
        Vec::<String>::new()
    );
    let legacy = saved(&node, Backend::Legacy);
    assert!(
        our_chains(&legacy).contains(&"neutrino-FORWARD".to_string()),
        "{legacy}"
    );
    assert_eq!(
        host_rules(&legacy),
        before,
        "the host's rules are untouched"
    );
}
