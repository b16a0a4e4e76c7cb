//! One node applying many networks, beside a raw `ip -batch` / `bridge
//! -batch` baseline that creates the same kernel objects, measured in the
//! same run. Needs root. `NEUTRINO_BENCH_NETWORKS` scales it (default 1000).
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

struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = netns::delete(&self.0);
    }
}

fn fresh(name: &str) -> Namespace {
    netns::create(name).unwrap();
    // The same settings for both sides: no IPv6 link-local addresses on the
    // thousands of links (the kernel's autoconfiguration dominates otherwise).
    netns::sysctl(Some(name), "net.ipv6.conf.default.disable_ipv6", "1").unwrap();
    netns::sysctl(Some(name), "net.ipv6.conf.all.disable_ipv6", "1").unwrap();
    Namespace(name.to_string())
}

fn ratio(ours: Duration, raw: Duration) -> String {
    format!(
        "{:>8.3}s vs {:>8.3}s  ratio {:>5.2}",
        ours.as_secs_f64(),
        raw.as_secs_f64(),
        ours.as_secs_f64() / raw.as_secs_f64()
    )
}

fn main() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "the benchmark needs root"
    );
    let networks: usize = std::env::var("NEUTRINO_BENCH_NETWORKS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
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

    // The raw baseline: one ip -batch for the links and neighbours, one
    // bridge -batch for the FDB.
    let raw_ns = fresh(&format!("nt-bench-raw-{tag}"));
    let (links, fdb, neighbours) = batches(&cold);
    let raw_cold = batch(&raw_ns.0, "ip", &links)
        + batch(&raw_ns.0, "bridge", &fdb)
        + batch(&raw_ns.0, "ip", &neighbours);
    let raw_dump = dump(&raw_ns.0);
    let extra = warm.ports.iter().find(|p| !cold.ports.contains(p)).unwrap();
    let raw_add = batch(
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

    // neutrino's agent on the same objects.
    let ours_ns = fresh(&format!("nt-bench-agent-{tag}"));
    let state = std::env::temp_dir().join(format!("neutrino-bench-{tag}"));
    let (ours_cold, ours_noop, ours_add, writes) = runtime.block_on(async {
        let agent = Agent::new(AgentConfig {
            netns: Some(ours_ns.0.clone()),
            namespace_prefix: format!("{}-", ours_ns.0),
            state_dir: state.clone(),
            iptables: neutrino::core::xtables::Choice::Auto,
            drift_check: std::time::Duration::from_secs(30),
        })
        .await
        .unwrap();
        let start = Instant::now();
        let report = agent.apply(&cold).await;
        let cold_time = start.elapsed();
        assert!(report.is_clean(), "{:?}", report.errors.first());
        let start = Instant::now();
        let noop = agent.apply(&cold).await;
        let noop_time = start.elapsed();
        let start = Instant::now();
        let add = agent.apply(&warm).await;
        let add_time = start.elapsed();
        (
            cold_time,
            noop_time,
            add_time,
            (report.writes, noop.writes, add.writes),
        )
    });
    let _ = std::fs::remove_dir_all(&state);

    println!("                        neutrino      raw");
    println!(
        "cold apply           {}   (neutrino: {} kernel writes)",
        ratio(ours_cold, raw_cold),
        writes.0
    );
    println!(
        "no-op resync         {}   (neutrino: {} kernel writes; raw: a full dump)",
        ratio(ours_noop, raw_dump),
        writes.1
    );
    println!(
        "one port added       {}   (neutrino: {} kernel writes; raw: the two commands)",
        ratio(ours_add, raw_add),
        writes.2
    );
    println!(
        "one port added       {}   (raw: a full dump, then the two commands)",
        ratio(ours_add, raw_dump + raw_add)
    );
    println!(
        "removing the namespaces (deleting thousands of links is the kernel's slowest path) ..."
    );
}
