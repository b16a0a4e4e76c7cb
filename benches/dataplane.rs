//! One node applying many networks, beside a raw `ip -batch` / `bridge
//! -batch` baseline that creates the same kernel objects, measured in the
//! same run. Needs root. `NEUTRINO_BENCH_NETWORKS` scales it (default
//! 1000); `NEUTRINO_BENCH_ROUNDS` repeats it (default 3), alternating which
//! side goes first, each from a fresh namespace on a settled kernel, and
//! prints the min–max of each side and of the rounds' ratios.
//!
//! Each network has a subnet without DHCP, two ports bound to the node under
//! test and ten bound to ten other nodes, so the node gets per network a
//! bridge, a VXLAN link, two veth pairs, twenty FDB entries (ten remote
//! MACs, ten flood entries) and ten neighbour entries.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use neutrino::api::{
    FixedIP, Network, NetworkSpec, NetworkType, Port, PortSpec, Subnet, SubnetSpec,
};
use neutrino::core::config::IdRange;
use neutrino::core::plan::{NodePlan, UplinkKind, plan_node};
use neutrino::core::{ClusterConfig, Object, Snapshot, resolve, status};
use neutrino::dataplane::agent::{Agent, AgentConfig};
use neutrino::dataplane::netns;

mod support;
use support::{Namespace, range, ratios, require_root, setting, settle};

const REMOTE_NODES: usize = 10;

fn named<T: kube::Resource>(mut object: T) -> T {
    object.meta_mut().namespace = Some("bench".into());
    object
}

fn port(name: String, network: &str, node: usize) -> Object {
    Object::Port(named(Port::new(
        &name,
        PortSpec {
            network: network.into(),
            fixed_ips: vec![FixedIP {
                subnet: format!("{network}-v4"),
                ip_address: None,
            }],
            mac_address: None,
            security_groups: vec![],
            port_security: false,
            allowed_address_pairs: vec![],
            node_name: Some(format!("node-{node}")),
            hostname: None,
            metadata_secret_name: None,
        },
    )))
}

fn snapshot(networks: usize) -> Snapshot {
    let mut s = Snapshot::default();
    for n in 0..networks {
        let name = format!("net-{n}");
        s.insert(Object::Network(named(Network::new(
            &name,
            NetworkSpec {
                network_type: NetworkType::Vxlan,
                segmentation_id: None,
                physical_network: None,
                mtu: None,
                external: false,
            },
        ))))
        .unwrap();
        s.insert(Object::Subnet(named(Subnet::new(
            &format!("{name}-v4"),
            SubnetSpec {
                network: name.clone(),
                cidr: format!("10.{}.{}.0/24", n / 256, n % 256),
                gateway_ip: None,
                allocation_pools: vec![],
                dns_nameservers: vec![],
                host_routes: vec![],
                enable_dhcp: false,
                ipv6_address_mode: None,
                ipv6_ra_mode: None,
            },
        ))))
        .unwrap();
        for local in 0..2 {
            s.insert(port(format!("{name}-local-{local}"), &name, 1))
                .unwrap();
        }
        for remote in 0..REMOTE_NODES {
            s.insert(port(format!("{name}-remote-{remote}"), &name, remote + 2))
                .unwrap();
        }
    }
    s
}

fn config() -> ClusterConfig {
    let mut config = ClusterConfig::with_nodes(REMOTE_NODES + 1);
    config.vni_ranges = vec![IdRange {
        min: 1000,
        max: 1_000_000,
    }];
    config
}

/// The node's plan before and after one more local port, with the first
/// allocations recorded in status as the controller records them, so the
/// new port moves nobody else's address.
fn plans(networks: usize) -> (NodePlan, NodePlan) {
    let config = config();
    let mut objects = snapshot(networks);
    let first = resolve(&objects, &config);
    assert!(
        first.problems().is_empty(),
        "{:?}",
        first.problems().first()
    );
    status::apply(
        &mut objects,
        &first,
        &Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    );
    objects
        .insert(port("net-0-local-extra".into(), "net-0", 1))
        .unwrap();
    let second = resolve(&objects, &config);
    (
        plan_node(&first, &config, &config.nodes[0]),
        plan_node(&second, &config, &config.nodes[0]),
    )
}

/// The same kernel objects as `plan`, as iproute2 batch files.
fn batches(plan: &NodePlan) -> (String, String, String) {
    let mut links = String::new();
    for bridge in &plan.bridges {
        let _ = writeln!(
            links,
            "link add {} mtu {} type bridge",
            bridge.name, bridge.mtu
        );
        let _ = writeln!(links, "link set {} up", bridge.name);
    }
    for uplink in &plan.uplinks {
        if let UplinkKind::Vxlan { vni, local, port } = &uplink.kind {
            let _ = writeln!(
                links,
                "link add {} mtu {} type vxlan id {vni} local {local} dstport {port} nolearning proxy",
                uplink.name, uplink.mtu
            );
            let _ = writeln!(
                links,
                "link set {} master {} up",
                uplink.name, uplink.bridge
            );
        }
    }
    for port in &plan.ports {
        let _ = writeln!(
            links,
            "link add {} mtu {} type veth peer name {} address {} mtu {}",
            port.interface, port.mtu, port.peer, port.mac, port.mtu
        );
        let _ = writeln!(
            links,
            "link set {} master {} up",
            port.interface, port.bridge
        );
    }
    let mut fdb = String::new();
    for entry in &plan.fdb {
        let _ = writeln!(
            fdb,
            "fdb append {} dev {} dst {} self permanent",
            entry.mac, entry.device, entry.destination
        );
    }
    let mut neighbours = String::new();
    for entry in &plan.neighbours {
        let _ = writeln!(
            neighbours,
            "neigh add {} lladdr {} dev {} nud permanent",
            entry.ip, entry.mac, entry.device
        );
    }
    (links, fdb, neighbours)
}

fn batch(namespace: &str, program: &str, text: &str) -> Duration {
    let file = std::env::temp_dir().join(format!(
        "neutrino-bench-{}-{program}.batch",
        std::process::id()
    ));
    std::fs::write(&file, text).unwrap();
    let start = Instant::now();
    let status = netns::command(namespace, program)
        .unwrap()
        .args(["-batch", file.to_str().unwrap()])
        .status()
        .unwrap();
    let elapsed = start.elapsed();
    std::fs::remove_file(&file).unwrap();
    assert!(status.success(), "{program} -batch failed");
    elapsed
}

fn dump(namespace: &str) -> Duration {
    let start = Instant::now();
    for (program, args) in [
        ("ip", vec!["-d", "link", "show"]),
        ("bridge", vec!["fdb", "show"]),
        ("ip", vec!["neigh", "show"]),
    ] {
        let output = netns::command(namespace, program)
            .unwrap()
            .args(&args)
            .output()
            .unwrap();
        assert!(output.status.success());
    }
    start.elapsed()
}

fn fresh(name: &str) -> Namespace {
    let namespace = Namespace::create(name);
    // The same settings for both sides: no IPv6 link-local addresses on the
    // thousands of links (the kernel's autoconfiguration dominates otherwise).
    netns::sysctl(Some(name), "net.ipv6.conf.default.disable_ipv6", "1").unwrap();
    netns::sysctl(Some(name), "net.ipv6.conf.all.disable_ipv6", "1").unwrap();
    namespace
}

/// One side's times for each step of a round.
#[derive(Clone, Copy, Default)]
struct Round {
    cold: Duration,
    noop: Duration,
    /// neutrino's second no-op resync, from the view the notifications keep.
    noop_kept: Duration,
    add: Duration,
}

/// The raw baseline: one ip -batch for the links and neighbours, one
/// bridge -batch for the FDB; a full dump; the new port's two commands.
fn raw_round(name: &str, cold: &NodePlan, warm: &NodePlan) -> Round {
    let raw_ns = fresh(name);
    let (links, fdb, neighbours) = batches(cold);
    let cold_time = batch(&raw_ns.0, "ip", &links)
        + batch(&raw_ns.0, "bridge", &fdb)
        + batch(&raw_ns.0, "ip", &neighbours);
    let noop = dump(&raw_ns.0);
    let extra = warm.ports.iter().find(|p| !cold.ports.contains(p)).unwrap();
    let add = batch(
        &raw_ns.0,
        "ip",
        &format!(
            "link add {} mtu {} type veth peer name {} address {} mtu {}\nlink set {} master {} up\n",
            extra.interface,
            extra.mtu,
            extra.peer,
            extra.mac,
            extra.mtu,
            extra.interface,
            extra.bridge
        ),
    );
    Round {
        cold: cold_time,
        noop,
        noop_kept: noop,
        add,
    }
}

/// neutrino's agent on the same objects: the cold apply, a resync with
/// nothing to do (which dumps: the cold apply's notifications overflowed
/// the socket, as a drift check would), a second one (from the view the
/// notifications keep), and the plan with one more port; its kernel writes.
fn agent_round(
    runtime: &tokio::runtime::Runtime,
    name: &str,
    cold: &NodePlan,
    warm: &NodePlan,
) -> (Round, [usize; 4]) {
    let ours_ns = fresh(name);
    let state = std::env::temp_dir().join(format!("neutrino-bench-{name}"));
    let result = runtime.block_on(async {
        let agent = Agent::new(AgentConfig {
            netns: Some(ours_ns.0.clone()),
            namespace_prefix: format!("{}-", ours_ns.0),
            state_dir: state.clone(),
            iptables: neutrino::core::xtables::Choice::Auto,
            drift_check: std::time::Duration::from_secs(30),
        })
        .await
        .unwrap();
        // The agent owns the plans it applies, as it does once it planned.
        let (first, again, kept, more) = (cold.clone(), cold.clone(), cold.clone(), warm.clone());
        let start = Instant::now();
        let report = agent.apply(first).await;
        let cold_time = start.elapsed();
        assert!(report.is_clean(), "{:?}", report.errors.first());
        let start = Instant::now();
        let noop = agent.apply(again).await;
        let noop_time = start.elapsed();
        let start = Instant::now();
        let noop_kept = agent.apply(kept).await;
        let noop_kept_time = start.elapsed();
        let start = Instant::now();
        let add = agent.apply(more).await;
        let add_time = start.elapsed();
        (
            Round {
                cold: cold_time,
                noop: noop_time,
                noop_kept: noop_kept_time,
                add: add_time,
            },
            [report.writes, noop.writes, noop_kept.writes, add.writes],
        )
    });
    let _ = std::fs::remove_dir_all(&state);
    result
}

/// One step's line: neutrino's and the baseline's times over the rounds,
/// and the ratio of each round's pair.
fn line(step: &str, ours: &[Duration], raw: &[Duration], note: &str) {
    let seconds = |d: &[Duration]| d.iter().map(Duration::as_secs_f64).collect::<Vec<_>>();
    let (ours, raw) = (seconds(ours), seconds(raw));
    println!(
        "{step:<20} {:>13}s {:>13}s  ratio {}   ({note})",
        range(&ours, 3),
        range(&raw, 3),
        ratios(&ours, &raw)
    );
}

fn main() {
    require_root();
    let networks = setting("NEUTRINO_BENCH_NETWORKS", 1000);
    let rounds = setting("NEUTRINO_BENCH_ROUNDS", 3).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tag = std::process::id();

    let start = Instant::now();
    let (cold, warm) = plans(networks);
    let planning = start.elapsed();
    println!(
        "{networks} networks: {} bridges, {} uplinks, {} ports, {} FDB entries, {} neighbours (planned twice in {:.3}s)",
        cold.bridges.len(),
        cold.uplinks.len(),
        cold.ports.len(),
        cold.fdb.len(),
        cold.neighbours.len(),
        planning.as_secs_f64()
    );

    // Rounds alternate which side goes first; each side starts from a fresh
    // namespace once the kernel has settled.
    let mut ours = Vec::new();
    let mut raw = Vec::new();
    let mut writes = [0; 4];
    for round in 0..rounds {
        let raw_name = format!("nt-bench-raw-{tag}-{round}");
        let ours_name = format!("nt-bench-agent-{tag}-{round}");
        let mut run_raw = || {
            settle(&format!("nt-bench-probe-{tag}"));
            raw.push(raw_round(&raw_name, &cold, &warm));
        };
        let mut run_ours = || {
            settle(&format!("nt-bench-probe-{tag}"));
            let (times, w) = agent_round(&runtime, &ours_name, &cold, &warm);
            ours.push(times);
            writes = w;
        };
        if round % 2 == 0 {
            run_raw();
            run_ours();
        } else {
            run_ours();
            run_raw();
        }
        eprintln!("round {} of {rounds} done", round + 1);
    }

    let step = |rounds: &[Round], f: fn(&Round) -> Duration| -> Vec<Duration> {
        rounds.iter().map(f).collect()
    };
    println!(
        "{rounds} rounds, min–max     {:>14} {:>14}",
        "neutrino", "raw"
    );
    line(
        "cold apply",
        &step(&ours, |r| r.cold),
        &step(&raw, |r| r.cold),
        &format!("neutrino: {} kernel writes", writes[0]),
    );
    line(
        "no-op resync",
        &step(&ours, |r| r.noop),
        &step(&raw, |r| r.noop),
        &format!(
            "neutrino dumps, as at a drift check: {} kernel writes; raw: a full dump",
            writes[1]
        ),
    );
    line(
        "no-op resync",
        &step(&ours, |r| r.noop_kept),
        &step(&raw, |r| r.noop),
        &format!(
            "neutrino from its kept view: {} kernel writes; raw: a full dump",
            writes[2]
        ),
    );
    line(
        "one port added",
        &step(&ours, |r| r.add),
        &step(&raw, |r| r.add),
        &format!(
            "neutrino: {} kernel writes; raw: the two commands",
            writes[3]
        ),
    );
    let dump_then_add: Vec<Duration> = raw.iter().map(|r| r.noop + r.add).collect();
    line(
        "one port added",
        &step(&ours, |r| r.add),
        &dump_then_add,
        "raw: a full dump, then the two commands",
    );
    println!(
        "removing the namespaces (deleting thousands of links is the kernel's slowest path) ..."
    );
}
