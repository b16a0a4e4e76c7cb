//! The attack suite: a tenant is an attacker. Each test sends real forged
//! packets from lab workloads and asserts the attack fails; where the same
//! packets would succeed without neutrino's protection, a control shows it,
//! so that none of these can pass by the path being broken. Which boundary
//! each test holds is mapped in docs/security.md.

mod support;

use std::time::Duration;

use neutrino::core::{Key, names};
use neutrino::dataplane::netns;
use support::{TestLab, exec_in, ipv6_of, manifests, neighbour, port_mac};

/// Two tenants on one node: alpha's victim, beta's attacker with port
/// security off (the worst a tenant can have), and a guarded one.
const TWO_TENANTS: &str = r#"
apiVersion: neutrino.dev/v1alpha1
kind: Network
metadata: {name: blue, namespace: alpha}
spec: {type: vxlan}
---
apiVersion: neutrino.dev/v1alpha1
kind: Subnet
metadata: {name: blue-v4, namespace: alpha}
spec: {network: blue, cidr: 10.0.0.0/24}
---
apiVersion: neutrino.dev/v1alpha1
kind: Port
metadata: {name: victim, namespace: alpha}
spec: {network: blue, fixedIPs: [{subnet: blue-v4, ipAddress: 10.0.0.21}], nodeName: node-1, securityGroups: [open]}
---
apiVersion: neutrino.dev/v1alpha1
kind: Port
metadata: {name: neighbour, namespace: alpha}
spec: {network: blue, fixedIPs: [{subnet: blue-v4, ipAddress: 10.0.0.22}], nodeName: node-2}
---
apiVersion: neutrino.dev/v1alpha1
kind: SecurityGroup
metadata: {name: open, namespace: alpha}
spec:
  rules:
  - {direction: ingress, ethertype: IPv4, protocol: udp, remoteIPPrefix: 0.0.0.0/0}
  - {direction: egress, ethertype: IPv4}
---
apiVersion: neutrino.dev/v1alpha1
kind: Network
metadata: {name: red, namespace: beta}
spec: {type: vxlan}
---
apiVersion: neutrino.dev/v1alpha1
kind: Subnet
metadata: {name: red-v4, namespace: beta}
spec: {network: red, cidr: 10.0.0.0/24}
---
apiVersion: neutrino.dev/v1alpha1
kind: Subnet
metadata: {name: red-v6, namespace: beta}
spec: {network: red, cidr: 2001:db8:66::/64, ipv6AddressMode: slaac, ipv6RAMode: slaac}
---
apiVersion: neutrino.dev/v1alpha1
kind: Port
metadata: {name: attacker, namespace: beta}
spec: {network: red, fixedIPs: [{subnet: red-v4, ipAddress: 10.0.0.66}], nodeName: node-1, portSecurity: false}
---
apiVersion: neutrino.dev/v1alpha1
kind: Port
metadata: {name: guarded, namespace: beta}
spec: {network: red, fixedIPs: [{subnet: red-v4, ipAddress: 10.0.0.67}], nodeName: node-1, securityGroups: [any]}
---
apiVersion: neutrino.dev/v1alpha1
kind: SecurityGroup
metadata: {name: any, namespace: beta}
spec:
  rules:
  - {direction: egress, ethertype: IPv4}
  - {direction: egress, ethertype: IPv6}
"#;

fn forge(lab: &TestLab, port: &str, args: &[&str]) -> (i32, String) {
    support::python(lab, port, "forge.py", args)
}

/// UDP datagrams to `port` counted in `namespace` for two seconds from
/// when it is made (it is listening by then).
struct Arrivals(std::process::Child);

impl Arrivals {
    fn listen(namespace: &str, port: u16) -> Self {
        let script = support::control_plane::repository().join("tests/support/forge.py");
        let child = netns::command(namespace, "python3")
            .unwrap()
            .args([script.to_str().unwrap(), "listen", &port.to_string(), "2"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        Arrivals(child)
    }

    fn count(self) -> u32 {
        let out = self.0.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }
}

/// The namespace of `port`'s workload.
fn workload(lab: &TestLab, port: &str) -> String {
    let (namespace, name) = port.split_once('/').unwrap();
    lab.lab
        .workload_namespace(&Key::new(namespace, name))
        .unwrap()
}

/// Runs `command` in the node's namespace and asserts it worked.
fn on_node(lab: &TestLab, node: &str, command: &[&str]) -> String {
    let (code, out) = exec_in(&lab.node(node), command);
    assert_eq!(code, 0, "{command:?}: {out}");
    out
}

/// What a host whose operator chose the most permissive settings has: no
/// reverse-path filter, router advertisements taken even when forwarding,
/// IPv6 on for every new link.
fn permissive(lab: &TestLab, node: &str) {
    for (key, value) in [
        ("net.ipv4.conf.all.rp_filter", "0"),
        ("net.ipv4.conf.default.rp_filter", "0"),
        ("net.ipv4.ip_forward", "1"),
        ("net.ipv6.conf.all.forwarding", "1"),
        ("net.ipv6.conf.all.accept_ra", "2"),
        ("net.ipv6.conf.default.accept_ra", "2"),
        ("net.ipv6.conf.default.disable_ipv6", "0"),
    ] {
        netns::sysctl(Some(&lab.node(node)), key, value).unwrap();
    }
}

/// Takes the boundary's `inet` table out of node-1, with its agent stopped
/// first: a drift check would put it back before a control's packets.
fn without_the_boundary(lab: &TestLab) {
    assert!(lab.lab.stop_agent("node-1"));
    on_node(
        lab,
        "node-1",
        &["nft", "delete", "table", "inet", "neutrino-host"],
    );
}

/// A workload with port security off sends to the node's stack as a host
/// on the bridge would: a route and a neighbour entry pointing at the
/// bridge's own MAC.
fn aim_at_the_node(lab: &TestLab, port: &str, network: &Key, node_ip: &str) {
    let bridge = names::bridge(network);
    let link = on_node(lab, "node-1", &["ip", "-o", "link", "show", "dev", &bridge]);
    let mac = link
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .expect("the bridge's MAC")
        .to_string();
    let family = if node_ip.contains(':') { "-6" } else { "-4" };
    for command in [
        vec!["ip", family, "route", "replace", node_ip, "dev", "eth0"],
        vec![
            "ip",
            family,
            "neigh",
            "replace",
            node_ip,
            "lladdr",
            mac.trim(),
            "dev",
            "eth0",
            "nud",
            "permanent",
        ],
    ] {
        let (code, out) = lab.exec(port, &command);
        assert_eq!(code, 0, "{command:?}: {out}");
    }
}

/// A TCP listener in the node's namespace standing in for the kubelet.
struct Listener(std::process::Child);

impl Listener {
    fn start(lab: &TestLab, node: &str) -> Self {
        let child = netns::command(&lab.node(node), "python3")
            .unwrap()
            .args([
                "-c",
                "import socket,time\n\
                 s=socket.socket(socket.AF_INET6)\n\
                 s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n\
                 s.bind(('::', 10250)); s.listen(64)\n\
                 time.sleep(600)",
            ])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        Listener(child)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_node_takes_nothing_from_its_tenants_whatever_its_sysctls() {
    let lab = TestLab::new("iso-host");
    let dir = manifests("iso-host", TWO_TENANTS);
    lab.lab.up(&dir, 2, &lab.name).await.unwrap();
    permissive(&lab, "node-1");
    on_node(
        &lab,
        "node-1",
        &[
            "ip",
            "-6",
            "address",
            "add",
            "fd00:198:18::1/64",
            "dev",
            "eth0",
        ],
    );
    let _kubelet = Listener::start(&lab, "node-1");
    let red = Key::new("beta", "red");

    // No link of neutrino's holds an IPv6 address of the node's.
    let addresses = on_node(&lab, "node-1", &["ip", "-6", "-o", "address", "show"]);
    let ours: Vec<&str> = addresses.lines().filter(|l| l.contains(": nt")).collect();
    assert!(
        ours.is_empty(),
        "neutrino's links hold addresses:\n{addresses}"
    );

    // The kubelet, over either family, from a workload that aims at it.
    for address in ["198.18.0.1", "fd00:198:18::1"] {
        aim_at_the_node(&lab, "beta/attacker", &red, address);
        let (code, out) = forge(&lab, "beta/attacker", &["tcp", address, "10250"]);
        assert_ne!(code, 0, "a workload reached the node at {address}: {out}");
    }

    // A router advertisement configures nothing on the node.
    let (code, out) = support::python(
        &lab,
        "beta/attacker",
        "nd-send.py",
        &["ra", "2001:db8:bad::"],
    );
    assert_eq!(code, 0, "{out}");
    std::thread::sleep(Duration::from_millis(500));
    let routes = on_node(&lab, "node-1", &["ip", "-6", "route", "show"]);
    assert!(
        !routes.contains("2001:db8:bad") && !routes.contains("proto ra"),
        "the node took a tenant's advertisement:\n{routes}"
    );
    let addresses = on_node(&lab, "node-1", &["ip", "-6", "-o", "address", "show"]);
    assert!(!addresses.contains("2001:db8:bad"), "{addresses}");

    // Datagrams need no answer: none arrives, and without the boundary's
    // table the same ones do (the path is real).
    let arrived = |lab: &TestLab| -> u32 {
        let arrivals = Arrivals::listen(&lab.node("node-1"), 10251);
        let (code, out) = forge(
            lab,
            "beta/attacker",
            &["udp", "10.0.0.66", "198.18.0.1", "5555", "10251"],
        );
        assert_eq!(code, 0, "{out}");
        arrivals.count()
    };
    assert_eq!(arrived(&lab), 0, "a workload's datagrams reached the node");
    without_the_boundary(&lab);
    assert!(arrived(&lab) > 0, "the control datagrams did not arrive");
}

#[tokio::test(flavor = "multi_thread")]
async fn vxlan_into_another_tenants_network_is_dropped() {
    let lab = TestLab::new("iso-vxlan");
    let dir = manifests("iso-vxlan", TWO_TENANTS);
    lab.lab.up(&dir, 2, &lab.name).await.unwrap();
    permissive(&lab, "node-1");
    let blue = Key::new("alpha", "blue");
    let red = Key::new("beta", "red");
    let details = on_node(
        &lab,
        "node-1",
        &["ip", "-d", "link", "show", &names::vxlan(&blue)],
    );
    let vni = details
        .split_whitespace()
        .skip_while(|w| *w != "id")
        .nth(1)
        .expect("a VXLAN id")
        .to_string();
    let victim_mac = port_mac(&lab, "alpha/victim");
    aim_at_the_node(&lab, "beta/attacker", &red, "198.18.0.1");

    let attack = |lab: &TestLab| {
        let (code, out) = forge(
            lab,
            "beta/attacker",
            &[
                "vxlan",
                "198.18.0.1",
                &vni,
                &victim_mac,
                "10.0.0.21",
                "9999",
            ],
        );
        assert_eq!(code, 0, "{out}");
    };
    let victim = workload(&lab, "alpha/victim");

    let arrivals = Arrivals::listen(&victim, 9999);
    attack(&lab);
    assert_eq!(
        arrivals.count(),
        0,
        "a forged VXLAN frame reached the victim"
    );

    // Control: with the boundary's table gone and rp_filter off, it does.
    without_the_boundary(&lab);
    let arrivals = Arrivals::listen(&victim, 9999);
    attack(&lab);
    assert!(arrivals.count() > 0, "the control frame did not arrive");
}

#[tokio::test(flavor = "multi_thread")]
async fn dhcp_from_a_forged_source_does_not_leave_the_port() {
    let lab = TestLab::new("iso-dhcp");
    let dir = manifests("iso-dhcp", TWO_TENANTS);
    lab.lab.up(&dir, 2, &lab.name).await.unwrap();
    // beta's guarded port holds 10.0.0.67 and takes 10.0.0.99 as well; it
    // sends DHCP client traffic from each to beta's attacker, which has
    // port security off and so filters nothing on its way in. The
    // listener's MAC is known: what is judged is the datagram, not an ARP
    // request from the forged address.
    let attacker_mac = port_mac(&lab, "beta/attacker");
    for command in [
        vec!["ip", "address", "add", "10.0.0.99/32", "dev", "eth0"],
        vec![
            "ip",
            "neigh",
            "replace",
            "10.0.0.66",
            "lladdr",
            &attacker_mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ],
    ] {
        let (code, out) = lab.exec("beta/guarded", &command);
        assert_eq!(code, 0, "{out}");
    }
    let listener = workload(&lab, "beta/attacker");
    for (source, arrives) in [("10.0.0.99", false), ("10.0.0.67", true)] {
        let arrivals = Arrivals::listen(&listener, 67);
        let (code, out) = forge(
            &lab,
            "beta/guarded",
            &["udp", source, "10.0.0.66", "68", "67"],
        );
        assert_eq!(code, 0, "{out}");
        assert_eq!(
            arrivals.count() > 0,
            arrives,
            "DHCP client traffic from {source}: arrived is not {arrives}"
        );
    }
}

/// A network of tenant-a's with IPv6 across two nodes.
const V6: &str = r#"
apiVersion: neutrino.dev/v1alpha1
kind: Network
metadata: {name: green, namespace: tenant-a}
spec: {type: vxlan}
---
apiVersion: neutrino.dev/v1alpha1
kind: Subnet
metadata: {name: green-v6, namespace: tenant-a}
spec: {network: green, cidr: 2001:db8:40::/64, ipv6AddressMode: slaac, ipv6RAMode: slaac}
---
apiVersion: neutrino.dev/v1alpha1
kind: Port
metadata: {name: owner, namespace: tenant-a}
spec: {network: green, nodeName: node-1}
---
apiVersion: neutrino.dev/v1alpha1
kind: Port
metadata: {name: victim, namespace: tenant-a}
spec: {network: green, nodeName: node-2}
---
apiVersion: neutrino.dev/v1alpha1
kind: Port
metadata: {name: attacker, namespace: tenant-a}
spec: {network: green, nodeName: node-2}
---
apiVersion: neutrino.dev/v1alpha1
kind: Port
metadata: {name: open, namespace: tenant-a}
spec: {network: green, nodeName: node-2, portSecurity: false}
---
# Answers anything: what a ping to it tests is the way there.
apiVersion: neutrino.dev/v1alpha1
kind: Port
metadata: {name: plain, namespace: tenant-a}
spec: {network: green, nodeName: node-1, portSecurity: false}
"#;

/// `port`'s link-local address, as its workload holds it.
fn link_local_of(lab: &TestLab, port: &str) -> String {
    let (code, out) = lab.exec(
        port,
        &[
            "ip", "-6", "-o", "address", "show", "dev", "eth0", "scope", "link",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let address = out.split_whitespace().nth(3).expect("a link-local address");
    address.split('/').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_link_local_address_on_another_node_resolves_and_answers() {
    let lab = TestLab::new("iso-ll");
    let dir = manifests("iso-ll", V6);
    lab.lab.up(&dir, 2, &lab.name).await.unwrap();
    // The VXLAN link answers neighbour solicitations from its table and
    // drops the rest: without the link-local entries, a workload could
    // not resolve a neighbour's (or its router's) link-local address.
    let plain = link_local_of(&lab, "tenant-a/plain");
    let (code, out) = lab.exec(
        "tenant-a/victim",
        &[
            "ping",
            "-6",
            "-c",
            "20",
            "-i",
            "0.1",
            "-W",
            "1",
            &format!("{plain}%eth0"),
        ],
    );
    assert!(
        code == 0 && out.contains(" 0% packet loss"),
        "a link-local address on another node did not answer every ping:\n{out}"
    );
    // A guarded port's default group drops the echo from a link-local
    // source, but its address still resolves, to its MAC.
    let owner = link_local_of(&lab, "tenant-a/owner");
    lab.exec(
        "tenant-a/victim",
        &["ping", "-6", "-c", "1", "-W", "1", &format!("{owner}%eth0")],
    );
    assert_eq!(
        neighbour(&lab, "tenant-a/victim", &owner),
        port_mac(&lab, "tenant-a/owner")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_neighbour_solicitation_poisons_nobody() {
    let lab = TestLab::new("iso-ns");
    let dir = manifests("iso-ns", V6);
    lab.lab.up(&dir, 2, &lab.name).await.unwrap();
    let owner = ipv6_of(&lab, "tenant-a/owner");
    let victim = ipv6_of(&lab, "tenant-a/victim");
    let owner_mac = port_mac(&lab, "tenant-a/owner");

    let (code, out) = lab.exec(
        "tenant-a/victim",
        &["ping", "-6", "-c", "2", "-W", "1", &owner],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(neighbour(&lab, "tenant-a/victim", &owner), owner_mac);
    std::thread::sleep(Duration::from_millis(1200));

    // The guarded attacker solicits the victim from the owner's address,
    // naming its own MAC: nothing changes.
    for (port, poisons) in [("tenant-a/attacker", false), ("tenant-a/open", true)] {
        let mac = port_mac(&lab, port);
        let (code, out) = lab.exec(
            port,
            &[
                "ip",
                "-6",
                "address",
                "add",
                &format!("{owner}/128"),
                "dev",
                "eth0",
                "nodad",
            ],
        );
        assert_eq!(code, 0, "{out}");
        let (code, out) = forge(&lab, port, &["ns", &victim, &owner, &mac]);
        assert_eq!(code, 0, "{out}");
        std::thread::sleep(Duration::from_millis(500));
        let seen = neighbour(&lab, "tenant-a/victim", &owner);
        assert_eq!(
            seen == mac,
            poisons,
            "{port}: the victim holds {seen} for the owner's address"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn lab_exec_sees_the_workloads_own_sys_and_lab_down_leaves_no_process() {
    let lab = TestLab::new("iso-lab");
    let dir = manifests("iso-lab", V6);
    lab.lab.up(&dir, 2, &lab.name).await.unwrap();
    // As a user runs it: `neutrino lab exec`.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_neutrino"))
        .args([
            "lab",
            "exec",
            "tenant-a/owner",
            "--",
            "cat",
            "/sys/class/net/eth0/address",
        ])
        .env("NEUTRINO_LAB_STATE", &lab.dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        port_mac(&lab, "tenant-a/owner")
    );

    use std::os::unix::fs::MetadataExt;
    let ours: Vec<(u64, u64)> = netns::list()
        .unwrap()
        .iter()
        .filter(|n| n.starts_with(&lab.name))
        .filter_map(|n| std::fs::metadata(netns::path(n)).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect();
    assert!(!ours.is_empty());
    lab.lab.down().unwrap();
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::metadata(e.path().join("ns/net"))
                .is_ok_and(|m| ours.contains(&(m.dev(), m.ino())))
        })
        .map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).replace('\0', " ")
        })
        .collect();
    assert!(left.is_empty(), "lab down left processes behind: {left:?}");
}

/// The MACs `bridge` has learned on `node`: what it holds that neutrino did
/// not put there.
fn learned_macs(lab: &TestLab, node: &str, bridge: &str) -> usize {
    let out = on_node(lab, node, &["bridge", "-j", "fdb", "show", "br", bridge]);
    let entries: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    (entries.iter())
        .filter(|e| e["state"].as_str().is_none_or(str::is_empty) && e.get("vlan").is_none())
        .filter(|e| {
            !e["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f == "self"))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn random_macs_fill_no_bridge_beyond_its_bound() {
    let lab = TestLab::new("iso-macs");
    let far = r#"
---
apiVersion: neutrino.dev/v1alpha1
kind: Port
metadata: {name: far, namespace: beta}
spec: {network: red, fixedIPs: [{subnet: red-v4, ipAddress: 10.0.0.68}], nodeName: node-2, portSecurity: false}
"#;
    let dir = manifests("iso-macs", &format!("{TWO_TENANTS}{far}"));
    lab.lab.up(&dir, 2, &lab.name).await.unwrap();
    let bridge = names::bridge(&Key::new("beta", "red"));
    let bound = neutrino::core::config::BRIDGE_LEARNED_MACS as usize;

    // More MACs than the bound, from a port without port security: each
    // frame floods, to the other node as well.
    let (code, out) = forge(
        &lab,
        "beta/attacker",
        &["macs", &(bound + 4000).to_string()],
    );
    assert_eq!(code, 0, "{out}");
    std::thread::sleep(Duration::from_millis(500));
    for node in ["node-1", "node-2"] {
        assert_eq!(learned_macs(&lab, node, &bridge), bound, "{node}");
    }

    // The network still carries its traffic, across nodes.
    let (code, out) = lab.exec(
        "beta/guarded",
        &["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.0.0.68"],
    );
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn arp_for_the_nodes_addresses_goes_unanswered() {
    let lab = TestLab::new("iso-arp");
    let dir = manifests("iso-arp", TWO_TENANTS);
    lab.lab.up(&dir, 2, &lab.name).await.unwrap();
    permissive(&lab, "node-1");
    // The node's underlay address: with arp_ignore 0 the kernel answers
    // for any of its addresses on any link, a tenant bridge included.
    let ask = |lab: &TestLab| forge(lab, "beta/attacker", &["arp", "198.18.0.1", "10.0.0.66"]);
    let (code, out) = ask(&lab);
    assert_ne!(code, 0, "the node answered ARP from a tenant: {out}");

    // Control: with the boundary's arp table gone, it answers.
    assert!(lab.lab.stop_agent("node-1"));
    on_node(
        &lab,
        "node-1",
        &["nft", "delete", "table", "arp", "neutrino-host"],
    );
    let (code, out) = ask(&lab);
    assert_eq!(code, 0, "the control request went unanswered: {out}");
}

/// The size of every DHCP server's log on `node`, together.
fn dhcp_logs(lab: &TestLab, node: &str) -> u64 {
    let servers = lab.dir.join("nodes").join(node).join("dhcp");
    std::fs::read_dir(&servers)
        .unwrap_or_else(|e| panic!("{}: {e}", servers.display()))
        .map(|server| server.unwrap().path().join("log"))
        .filter_map(|log| std::fs::metadata(log).ok())
        .map(|m| m.len())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dhcp_flood_writes_nothing_to_the_servers_log() {
    let lab = TestLab::new("iso-dlog");
    let dir = manifests("iso-dlog", TWO_TENANTS);
    lab.lab.up(&dir, 2, &lab.name).await.unwrap();
    let before = dhcp_logs(&lab, "node-1");
    assert!(before > 0, "no DHCP server log on node-1");
    // Half answered (the port's own MAC), half refused (unknown clients).
    let (code, out) = forge(&lab, "beta/attacker", &["discover", "2000"]);
    assert_eq!(code, 0, "{out}");
    std::thread::sleep(Duration::from_millis(500));
    let grown = dhcp_logs(&lab, "node-1") - before;
    assert!(grown < 1024, "2,000 discovers wrote {grown} bytes of log");
}
