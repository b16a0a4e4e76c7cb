//! One security group rule changed on a node that already holds many
//! rules, beside a raw `iptables-restore --noflush` of the one chain it is
//! in, measured in the same run on the same tables. Needs root.
//! `NEUTRINO_BENCH_RULES` picks the sizes (default `10000,50000`),
//! `NEUTRINO_BENCH_ROUNDS` the rounds (default 5); rounds alternate which
//! side goes first, and the min–max of each side and of the rounds' ratios
//! is printed.

use std::time::{Duration, Instant};

use neutrino::api::EtherType;
use neutrino::core::Key;
use neutrino::core::allocate::Mac;
use neutrino::core::firewall::{BridgePorts, node_rules, port_chains};
use neutrino::core::plan::{AllowedSource, FilterRemote, FilterRule, PortFilter, SecurityPlan};
use neutrino::core::resolve::PortMatch;
use neutrino::core::xtables::Backend;
use neutrino::dataplane::iptables::Firewall;
use neutrino::dataplane::netns;

mod support;
use support::{Namespace, range, ratios, require_root, setting, sizes};

const PORTS_PER_BRIDGE: usize = 20;
/// Rules of each direction a port's groups give it.
const GROUP_RULES: u16 = 5;

fn rule(port: u16) -> FilterRule {
    FilterRule {
        ethertype: EtherType::IPv4,
        protocol: Some(6),
        ports: Some(PortMatch::Ports(port, port)),
        remote: FilterRemote::Cidr("10.0.0.0/8".parse().unwrap()),
        group: Key::new("bench", "web"),
    }
}

fn port(n: usize, first_port: u16) -> PortFilter {
    let [a, b] = (n as u16).to_be_bytes();
    PortFilter {
        port: Key::new("bench", format!("p{n}")),
        interface: format!("ntp-{n:010}"),
        allowed_sources: vec![AllowedSource {
            mac: Mac([2, 0, 0, 0, a, b]),
            cidr: format!("10.{a}.{b}.5/32").parse().unwrap(),
        }],
        ingress: (0..GROUP_RULES).map(|i| rule(first_port + i)).collect(),
        egress: (0..GROUP_RULES).map(|i| rule(8000 + i)).collect(),
    }
}

/// A node with `ports` filtered ports, `PORTS_PER_BRIDGE` to a bridge.
fn node(ports: usize) -> (SecurityPlan, Vec<BridgePorts>) {
    let plan = SecurityPlan {
        ipsets: vec![],
        ports: (0..ports).map(|n| port(n, 80)).collect(),
        unfiltered: vec![],
    };
    let bridges = plan
        .ports
        .chunks(PORTS_PER_BRIDGE)
        .enumerate()
        .map(|(b, chunk)| BridgePorts {
            bridge: format!("ntb-{b:010}"),
            ports: chunk.iter().map(|p| p.interface.clone()).collect(),
        })
        .collect();
    (plan, bridges)
}

fn rules(plan: &SecurityPlan, bridges: &[BridgePorts]) -> usize {
    node_rules(plan, bridges, false).rules() + node_rules(plan, bridges, true).rules()
}

/// The restore input a person would write for one chain: the chain
/// declared (which empties it) and its rules.
fn one_chain(plan: &SecurityPlan, bridges: &[BridgePorts], chain: &str) -> String {
    let rules = node_rules(plan, bridges, false);
    let lines = &rules.chains[&format!("filter {chain}")].lines;
    format!("*filter\n:{chain} - [0:0]\n{}\nCOMMIT\n", lines.join("\n"))
}

fn restore(namespace: &str, text: &str) -> Duration {
    use std::io::Write;
    let start = Instant::now();
    let mut child = netns::command(namespace, &Backend::Nft.program(false, "restore"))
        .unwrap()
        .arg("--noflush")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    start.elapsed()
}

fn main() {
    require_root();
    let sizes = sizes("NEUTRINO_BENCH_RULES", "10000,50000");
    let rounds = setting("NEUTRINO_BENCH_ROUNDS", 5).max(1);
    let tag = std::process::id();
    println!("{rounds} rounds, min–max        neutrino            raw");
    for target in sizes {
        let per_port = {
            let (plan, bridges) = node(PORTS_PER_BRIDGE);
            rules(&plan, &bridges) / PORTS_PER_BRIDGE
        };
        let ports = (target / per_port).max(1);
        let (mut plan, bridges) = node(ports);
        let total = rules(&plan, &bridges);
        let name = format!("nt-bench-fw-{tag}-{target}");
        let namespace = Namespace::create(&name);
        let state = std::env::temp_dir().join(format!("neutrino-bench-fw-{tag}"));
        let firewall =
            Firewall::new(&state, Backend::Nft).checking_drift_every(Duration::from_secs(3600));
        let cold = Instant::now();
        firewall
            .sync_node(Some(&namespace.0), &plan, &bridges)
            .unwrap();
        let cold = cold.elapsed();

        // One rule of one port toggles between two values; neutrino makes
        // one change, the raw restore the other, on the same tables.
        let [chain, _, _] = port_chains(&plan.ports[0].interface);
        let mut ours = Vec::new();
        let mut raw = Vec::new();
        let mut writes = 0;
        for round in 0..rounds {
            let mut neutrino_turn = |plan: &mut SecurityPlan| {
                plan.ports[0].ingress[0] = rule(if plan.ports[0].ingress[0] == rule(80) {
                    81
                } else {
                    80
                });
                let start = Instant::now();
                writes = firewall
                    .sync_node(Some(&namespace.0), plan, &bridges)
                    .unwrap();
                start.elapsed()
            };
            let raw_turn = |plan: &mut SecurityPlan| {
                plan.ports[0].ingress[0] = rule(if plan.ports[0].ingress[0] == rule(80) {
                    81
                } else {
                    80
                });
                let time = restore(&namespace.0, &one_chain(plan, &bridges, &chain));
                // Not measured: neutrino catches up with the new value, so
                // that its next turn is a change again.
                firewall
                    .sync_node(Some(&namespace.0), plan, &bridges)
                    .unwrap();
                time
            };
            if round % 2 == 0 {
                ours.push(neutrino_turn(&mut plan));
                raw.push(raw_turn(&mut plan));
            } else {
                raw.push(raw_turn(&mut plan));
                ours.push(neutrino_turn(&mut plan));
            }
        }
        let seconds = |d: &[Duration]| d.iter().map(Duration::as_secs_f64).collect::<Vec<_>>();
        let (ours, raw) = (seconds(&ours), seconds(&raw));
        println!(
            "one rule of {total:>6}  {:>13}s {:>13}s  ratio {}   (neutrino: {writes} restore; raw: the one chain; cold apply {:.3}s)",
            range(&ours, 4),
            range(&raw, 4),
            ratios(&ours, &raw),
            cold.as_secs_f64()
        );
        let _ = std::fs::remove_dir_all(&state);
    }
}
