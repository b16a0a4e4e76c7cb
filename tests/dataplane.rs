//! The dataplane reconciler against a real kernel, in namespaces of its own.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use neutrino::core::allocate::Mac;
use neutrino::core::reconcile::Observed;

use neutrino::core::firewall::{BridgePorts, bridge_ports};
use neutrino::core::plan::NodePlan;
use neutrino::core::reconcile::diff;
use neutrino::core::xtables::{Backend, Choice};
use neutrino::dataplane::agent::{Agent, AgentConfig};
use neutrino::dataplane::iptables::Firewall;
use neutrino::dataplane::netlink::Netlink;
use neutrino::dataplane::netns;
use neutrino::dataplane::workload;
use support::examples::node_plan;
use support::{Namespaces, require_root};

#[tokio::test]
async fn a_resync_with_nothing_to_do_writes_nothing() {
    require_root();
    let mut spaces = Namespaces::new("l2");
    let node = spaces.create("node");
    let mut plan = node_plan("quickstart", "node-1");
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

/// Runs `program` (ip or bridge) in `namespace`, as someone other than
/// the agent would.
fn behind_its_back(namespace: &str, program: &str, args: &str) {
    let status = netns::command(namespace, program)
        .unwrap()
        .args(args.split_whitespace())
        .status()
        .unwrap();
    assert!(status.success(), "{program} {args}");
}

/// What a fresh connection reads from the kernel with a full dump.
async fn dumped(namespace: &str) -> Observed {
    Netlink::connect(Some(namespace))
        .await
        .unwrap()
        .observe()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_view_kept_from_notifications_reads_as_a_dump_does() {
    require_root();
    let mut spaces = Namespaces::new("view");
    let node = spaces.create("node");
    let mut plan = node_plan("quickstart", "node-1");
    for dhcp in &mut plan.dhcp {
        dhcp.namespace = spaces.create(&dhcp.namespace);
    }
    // Dumped once; from then on only what the notifications say.
    let kept = Netlink::connect(Some(&node))
        .await
        .unwrap()
        .dumping_every(Duration::from_secs(3600));
    let build = diff(&kept.observe().await.unwrap(), &plan);
    assert!(kept.apply(&build).await.is_empty());
    assert_eq!(kept.observe().await.unwrap(), dumped(&node).await);

    let vxlan = &plan.uplinks[0].name;
    let port = &plan.ports[0].interface;
    let remote = plan
        .fdb
        .iter()
        .find(|e| e.mac != Mac::ZERO)
        .expect("node-2's port");
    let neighbour = &plan.neighbours[0];
    for (program, args) in [
        ("ip", format!("link set {port} mtu 1400")),
        ("ip", format!("link set {port} nomaster")),
        ("bridge", format!("link set dev {vxlan} isolated off")),
        (
            "bridge",
            format!("fdb append 00:00:00:00:00:00 dev {vxlan} dst 192.0.2.77 self permanent"),
        ),
        (
            "bridge",
            format!(
                "fdb replace {} dev {vxlan} dst 192.0.2.78 self permanent",
                remote.mac
            ),
        ),
        (
            "ip",
            format!("neigh replace 10.10.0.99 lladdr 02:00:00:00:00:99 dev {vxlan} nud permanent"),
        ),
        ("ip", format!("neigh del {} dev {vxlan}", neighbour.ip)),
        (
            "ip",
            "link add nt-foreign type veth peer name nt-foreign-p".into(),
        ),
    ] {
        behind_its_back(&node, program, &args);
    }
    let seen = kept.observe().await.unwrap();
    assert_eq!(seen, dumped(&node).await);
    assert!(
        seen.fdb
            .iter()
            .any(|e| e.mac == remote.mac && e.destination.to_string() == "192.0.2.78"),
        "{:#?}",
        seen.fdb
    );

    // What it repairs from the view leaves the kernel as the plan says.
    let repair = diff(&seen, &plan);
    assert!(!repair.is_empty());
    assert!(kept.apply(&repair).await.is_empty());
    assert!(diff(&dumped(&node).await, &plan).is_empty());
    behind_its_back(&node, "ip", &format!("link del {vxlan}"));
    let seen = kept.observe().await.unwrap();
    assert_eq!(seen, dumped(&node).await);
    assert!(seen.fdb.is_empty() && seen.neighbours.is_empty());
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
    let mut under_test = NodeFirewall::new("fw", std::time::Duration::ZERO);
    under_test.sync();
    let node = under_test.node.clone();
    let bridge = under_test.bridges[0].bridge.clone();
    assert!(our_rules(&node).iter().any(|r| r.contains(&bridge)));

    // The port goes first; its network's bridge a round later, as when a
    // namespace is emptied: the bridge's rules go with it.
    under_test.plan.security.ports.clear();
    under_test.plan.security.ipsets.clear();
    under_test.sync();
    assert!(our_rules(&node).iter().any(|r| r.contains(&bridge)));
    under_test.bridges.clear();
    under_test.sync();
    assert_eq!(our_rules(&node), Vec::<String>::new());
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
    let mut plan = node_plan("quickstart", "node-1");
    plan.dhcp.clear();
    Firewall::new(state.join("firewall"), Backend::Nft)
        .sync_node(Some(&node), &plan.security, &bridge_ports(&plan))
        .unwrap();
    assert!(!our_chains(&saved(&node, Backend::Nft)).is_empty());

    // The agent finds the host on legacy, moves there, and leaves nothing in nft.
    let agent = Agent::new(AgentConfig {
        netns: Some(node.clone()),
        namespace_prefix: format!("{node}-"),
        state_dir: state.clone(),
        iptables: Choice::Auto,
        drift_check: std::time::Duration::ZERO,
    })
    .await
    .unwrap();
    assert_eq!(
        agent.iptables(),
        (Backend::Legacy, "legacy holds 3 of the host's rules, nft 0")
    );
    let report = agent.apply(plan.clone()).await;
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

/// Every rule of neutrino's chains in `namespace`'s nf_tables, with its
/// handle, by chain: a rule written again gets a new handle.
fn rule_handles(namespace: &str) -> BTreeMap<String, Vec<String>> {
    let mut chains = BTreeMap::new();
    for family in ["ip", "ip6"] {
        let output = netns::command(namespace, "nft")
            .unwrap()
            .args(["-a", "list", "table", family, "filter"])
            .output()
            .unwrap();
        let mut chain = String::new();
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let line = line.trim();
            if let Some(name) = line.strip_prefix("chain ") {
                chain = format!("{family} {}", name.split_whitespace().next().unwrap());
            } else if line.contains("# handle") && !line.starts_with("type ") {
                chains
                    .entry(chain.clone())
                    .or_insert_with(Vec::new)
                    .push(line.to_string());
            }
        }
    }
    chains.retain(|chain, _| {
        chain.contains(" nt-") || chain.contains(" neutrino-") || chain.ends_with(" FORWARD")
    });
    chains
}

fn iptables(namespace: &str, args: &[&str]) {
    let status = netns::command(namespace, "iptables-nft")
        .unwrap()
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "iptables {args:?}");
}

/// quickstart's node-1 firewall in a namespace of its own, drift read back
/// at most once per `drift_every`; its state directory goes however the
/// test ends.
struct NodeFirewall {
    _spaces: Namespaces,
    node: String,
    state: std::path::PathBuf,
    firewall: Firewall,
    plan: NodePlan,
    bridges: Vec<BridgePorts>,
}

impl NodeFirewall {
    fn new(tag: &str, drift_every: std::time::Duration) -> Self {
        require_root();
        let mut spaces = Namespaces::new(tag);
        let node = spaces.create("node");
        let state = std::env::temp_dir().join(format!("neutrino-{}", spaces.prefix()));
        let firewall = Firewall::new(&state, Backend::Nft).checking_drift_every(drift_every);
        let plan = node_plan("quickstart", "node-1");
        let bridges = bridge_ports(&plan);
        Self {
            _spaces: spaces,
            node,
            state,
            firewall,
            plan,
            bridges,
        }
    }

    /// One sync; its kernel writes.
    fn sync(&self) -> usize {
        self.firewall
            .sync_node(Some(&self.node), &self.plan.security, &self.bridges)
            .unwrap()
    }
}

impl Drop for NodeFirewall {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

#[test]
fn a_resync_puts_back_exactly_the_rules_changed_behind_its_back() {
    let under_test = NodeFirewall::new("drift", std::time::Duration::ZERO);
    let (node, plan) = (&under_test.node, &under_test.plan);
    let sync = || under_test.sync();
    assert!(sync() > 0);
    assert_eq!(sync(), 0, "nothing changed, nothing written");
    let rules = our_rules(node);
    let port = &plan.security.ports[0].interface;
    let [ingress, egress, _] = neutrino::core::firewall::port_chains(port);

    // Each change behind the agent's back: the next resync makes one
    // write, the rules are as before, every other chain keeps its rules
    // (same nf_tables handles), and the resync after that writes nothing.
    let changes: Vec<(&str, Vec<&str>, &str)> = vec![
        ("a port chain flushed", vec!["-F", &ingress], &ingress),
        (
            "a rule edited",
            vec!["-R", &egress, "1", "-j", "ACCEPT"],
            &egress,
        ),
        (
            "a rule added",
            vec!["-I", &ingress, "1", "-j", "ACCEPT"],
            &ingress,
        ),
        (
            "the jump from FORWARD removed",
            vec![
                "-D",
                "FORWARD",
                "-m",
                "physdev",
                "--physdev-is-bridged",
                "-j",
                "neutrino-FORWARD",
            ],
            "FORWARD",
        ),
    ];
    for (what, change, chain) in changes {
        let before = rule_handles(node);
        iptables(node, &change);
        assert_eq!(sync(), 1, "{what}: one restore puts it back");
        assert_eq!(our_rules(node), rules, "{what}: the rules are as before");
        let after = rule_handles(node);
        for (name, handles) in &before {
            if !name.ends_with(&format!(" {chain}")) {
                assert_eq!(after.get(name), Some(handles), "{what}: {name} was touched");
            }
        }
        assert_eq!(sync(), 0, "{what}: and then nothing is left to do");
    }
    // Someone else's rule in FORWARD is theirs: nothing to put back.
    iptables(node, &["-A", "FORWARD", "-s", "10.9.9.9/32", "-j", "DROP"]);
    assert_eq!(sync(), 0);

    // A remote group's ipset that lost a member is filled again.
    let set = plan
        .security
        .ipsets
        .iter()
        .find(|s| !s.members.is_empty())
        .expect("quickstart's default group is a remote group");
    let members = |namespace: &str| -> Vec<String> {
        let output = netns::command(namespace, "ipset")
            .unwrap()
            .args(["list", &set.name])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let mut found: Vec<String> = text
            .split("Members:")
            .nth(1)
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        found.sort();
        found
    };
    let before = members(node);
    assert!(!before.is_empty());
    let status = netns::command(node, "ipset")
        .unwrap()
        .args(["del", &set.name, &before[0]])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(sync(), 1, "one ipset restore");
    assert_eq!(members(node), before);
    assert_eq!(sync(), 0);
}

#[test]
fn a_resync_puts_back_a_routers_nat_rules() {
    require_root();
    let mut spaces = Namespaces::new("natdrift");
    let state = std::env::temp_dir().join(format!("neutrino-{}", spaces.prefix()));
    let firewall = Firewall::new(&state, Backend::Nft);
    let mut router = ["node-1", "node-2", "node-3"]
        .iter()
        .find_map(|node| node_plan("three-tier", node).routers.into_iter().next())
        .expect("three-tier has a router");
    router.namespace = spaces.create(&router.namespace);
    let nat = |namespace: &str| -> Vec<String> {
        let output = netns::command(namespace, "iptables-nft-save")
            .unwrap()
            .args(["-t", "nat"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|l| l.starts_with("-A "))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(firewall.sync_router(&router).unwrap(), 1);
    let rules = nat(&router.namespace);
    assert!(rules.iter().any(|r| r.contains("SNAT")), "{rules:?}");
    assert_eq!(firewall.sync_router(&router).unwrap(), 0);
    iptables(&router.namespace, &["-t", "nat", "-F", "POSTROUTING"]);
    assert_eq!(
        firewall.sync_router(&router).unwrap(),
        1,
        "flushed: put back"
    );
    assert_eq!(nat(&router.namespace), rules);
    assert_eq!(firewall.sync_router(&router).unwrap(), 0);
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn an_unchanged_ruleset_is_read_back_at_most_once_per_interval() {
    let under_test = NodeFirewall::new("driftgate", std::time::Duration::from_secs(3600));
    let (node, plan) = (&under_test.node, &under_test.plan);
    let sync = || under_test.sync();
    assert!(sync() > 0);
    assert_eq!(sync(), 0, "nothing new, and read back just now");
    let [ingress, _, _] = neutrino::core::firewall::port_chains(&plan.security.ports[0].interface);
    iptables(node, &["-F", &ingress]);
    // Woken again within the interval: no process, so nothing seen yet;
    // the agent's next resync interval is when it is put back.
    assert_eq!(sync(), 0);
    let still_flushed = support::saved_rules(node)
        .into_iter()
        .filter(|(save, _)| *save == "iptables-nft-save")
        .all(|(_, line)| !line.starts_with(&format!("-A {ingress} ")));
    assert!(still_flushed, "within the interval nothing was read back");
}

#[test]
fn the_first_ports_make_bridged_traffic_pass_iptables() {
    let mut under_test = NodeFirewall::new("bridged", std::time::Duration::from_secs(3600));
    let ports = std::mem::take(&mut under_test.plan.security.ports);
    under_test.sync();
    let key = "net.bridge.bridge-nf-call-iptables";
    netns::sysctl(Some(&under_test.node), key, "0").unwrap();
    // The ports come within the drift interval: no table is read, but
    // their chains would see no bridged packet without this.
    under_test.plan.security.ports = ports;
    assert!(under_test.sync() > 0);
    assert_eq!(
        netns::read_sysctl(Some(&under_test.node), key).unwrap(),
        "1"
    );
}

/// `ip -j` output of `args` inside `namespace`.
fn ip_json(namespace: &str, args: &[&str]) -> serde_json::Value {
    let output = std::process::Command::new("ip")
        .args(["-n", namespace, "-j"])
        .args(args)
        .output()
        .expect("ip runs");
    assert!(
        output.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("ip -j prints JSON")
}

#[tokio::test]
async fn a_ports_veth_end_attaches_to_a_runtimes_namespace_with_its_addresses_and_routes() {
    require_root();
    let mut namespaces = Namespaces::new("attach");
    let node = namespaces.create("node");
    let pod = namespaces.create("pod");
    behind_its_back(
        &node,
        "ip",
        "link add ntp-attach type veth peer name ntw-attach",
    );

    let path = netns::path(&pod);
    let addresses = ["10.9.0.5/24".parse().unwrap()];
    let routes = [neutrino::core::plan::RoutePlan {
        destination: "0.0.0.0/0".parse().unwrap(),
        nexthop: "10.9.0.1".parse().unwrap(),
    }];
    workload::attach(
        Some(&node),
        "ntw-attach",
        &path,
        "net1",
        &addresses,
        &routes,
    )
    .await
    .expect("attaching");

    let link = &ip_json(&pod, &["addr", "show", "net1"])[0];
    assert!(
        link["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{link}"
    );
    let held: Vec<String> = (link["addr_info"].as_array().unwrap().iter())
        .filter(|a| a["family"] == "inet")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect();
    assert_eq!(held, ["10.9.0.5/24"]);
    let default = ip_json(&pod, &["route", "show", "default"]);
    assert_eq!(default[0]["gateway"], "10.9.0.1", "{default}");
    // The node keeps its end; the workload's is gone from it.
    assert!(ip_json(&node, &["link", "show", "ntp-attach"])[0]["ifname"] == "ntp-attach");
    let left = std::process::Command::new("ip")
        .args(["-n", &node, "link", "show", "ntw-attach"])
        .output()
        .unwrap();
    assert!(!left.status.success(), "the workload's end left the node");

    // A namespace that is not there is named in the error.
    let missing = std::path::Path::new("/run/netns/neutrino-no-such-pod");
    let error = workload::attach(Some(&node), "ntp-attach", missing, "net2", &[], &[])
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("neutrino-no-such-pod"),
        "{error}"
    );
}

/// Conntrack entries of both families, in a zone and in a twin zone with
/// the same addresses and ports, as a cut finds them.
#[test]
fn a_cut_marks_the_entries_of_its_zone_in_both_families_and_nothing_else() {
    use neutrino::core::conntrack::CUT_MARK;
    use neutrino::core::plan::{AllowedSource, PortFilter};
    require_root();
    let mut spaces = Namespaces::new("ct");
    let node = spaces.create("node");
    let (zone, twin) = ("7", "8");
    let entries = [
        "-p tcp -s 10.0.0.21 -d 10.0.0.22 --sport 40000 --dport 5000 --state ESTABLISHED",
        "-p icmp -s 10.0.0.21 -d 10.0.0.22 --icmp-type 8 --icmp-code 0 --icmp-id 7",
        "-p tcp -s 2001:db8::21 -d 2001:db8::22 --sport 40000 --dport 5000 --state ESTABLISHED",
        "-p icmpv6 -s 2001:db8::21 -d 2001:db8::22 --icmpv6-type 128 --icmpv6-code 0 --icmpv6-id 7",
    ];
    for zone in [zone, twin] {
        for entry in entries {
            let mut args = vec![
                "conntrack",
                "-I",
                "--zone",
                zone,
                "-t",
                "600",
                "-u",
                "SEEN_REPLY",
            ];
            args.extend(entry.split_whitespace());
            let (code, output) = support::exec_in(&node, &args);
            assert_eq!(code, 0, "{args:?}: {output}");
        }
    }
    // The server's port, whose rules now admit nothing.
    let server = PortFilter {
        port: neutrino::core::Key::new("t", "server"),
        interface: "ntp-server".into(),
        allowed_sources: ["10.0.0.22/32", "2001:db8::22/128"]
            .map(|cidr| AllowedSource {
                mac: Mac([0xfa, 0x16, 0x3e, 0, 0, 0x22]),
                cidr: cidr.parse().unwrap(),
            })
            .to_vec(),
        ingress: Vec::new(),
        egress: Vec::new(),
    };
    let cut = neutrino::dataplane::conntrack::cut(Some(&node), 7, &[&server], &BTreeMap::new());
    assert_eq!(cut.unwrap(), 4);
    let marks = |zone: &str| -> Vec<u32> {
        let listed = support::exec_in(&node, &["conntrack", "-L", "--zone", zone, "-f", "ipv4"]).1
            + &support::exec_in(&node, &["conntrack", "-L", "--zone", zone, "-f", "ipv6"]).1;
        (listed.lines())
            .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("mark=")))
            .map(|m| m.parse().unwrap())
            .collect()
    };
    assert_eq!(marks(zone), [CUT_MARK; 4]);
    assert_eq!(marks(twin), [0; 4]);
    // Cut already: nothing to mark again.
    let again = neutrino::dataplane::conntrack::cut(Some(&node), 7, &[&server], &BTreeMap::new());
    assert_eq!(again.unwrap(), 0);
}
