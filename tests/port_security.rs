//! Port security against real spoofed packets between lab workloads: a
//! workload that claims a neighbour's address in ARP, or answers DHCP,
//! changes nothing for the others. Beside each attacker with port security
//! stands one without, whose same packets do get through: what stops the
//! first is the port's guard.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::objects::{Objects, fixed, merged};
use support::{Manifests, TestLab, eventually, ipv6_of, manifests, neighbour, port_mac};

/// How long a packet or a cut may take to show.
const SOON: Duration = Duration::from_secs(5);

/// owner, victim, attacker and open on one network and one node: the
/// attacker's own rules let DHCP requests in, so what keeps its answers
/// from its neighbours is port security alone; open has none.
fn network() -> Objects {
    Objects::new()
        .network("tenant-a/blue")
        .subnet("tenant-a/blue-v4", "blue", "10.0.0.0/24", json!({}))
        .port(
            "tenant-a/owner",
            "blue",
            "node-1",
            fixed("blue-v4", "10.0.0.21"),
        )
        .port(
            "tenant-a/victim",
            "blue",
            "node-1",
            fixed("blue-v4", "10.0.0.22"),
        )
        .port(
            "tenant-a/attacker",
            "blue",
            "node-1",
            merged(
                fixed("blue-v4", "10.0.0.23"),
                json!({"securityGroups": ["dhcp-server"]}),
            ),
        )
        .security_group(
            "tenant-a/dhcp-server",
            json!([
                {"direction": "ingress", "ethertype": "IPv4", "protocol": "udp",
                 "portRangeMin": 67, "portRangeMax": 67, "remoteIPPrefix": "0.0.0.0/0"},
                {"direction": "egress", "ethertype": "IPv4"},
            ]),
        )
        .port(
            "tenant-a/open",
            "blue",
            "node-1",
            merged(
                fixed("blue-v4", "10.0.0.24"),
                json!({"portSecurity": false}),
            ),
        )
}

/// `port`'s workload claims `ip` in gratuitous ARP.
fn claim(lab: &TestLab, port: &str, ip: &str) {
    let (code, out) = lab.exec(
        port,
        &["ip", "address", "add", &format!("{ip}/32"), "dev", "eth0"],
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = lab.exec(
        port,
        &[
            "arping", "-U", "-c", "3", "-w", "3", "-I", "eth0", "-s", ip, ip,
        ],
    );
    // arping exits 1 when nothing answers, which unanswered gratuitous ARP
    // never is; anything else is a failure to send.
    assert!(code == 0 || code == 1, "arping: {out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workload_cannot_take_a_neighbours_address_in_arp() {
    let lab = TestLab::new("guard-arp");
    let dir = manifests("guard-arp", &network().yaml());
    lab.lab.up(&dir, 2, &lab.name).await.unwrap();
    let owner = port_mac(&lab, "tenant-a/owner");
    assert!(lab.pings("tenant-a/victim", "10.0.0.21"));
    assert_eq!(neighbour(&lab, "tenant-a/victim", "10.0.0.21"), owner);
    // The kernel takes no override within a second of the last update.
    std::thread::sleep(Duration::from_millis(1200));

    claim(&lab, "tenant-a/attacker", "10.0.0.21");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        neighbour(&lab, "tenant-a/victim", "10.0.0.21"),
        owner,
        "the guarded attacker rewrote the victim's neighbour entry"
    );
    assert!(lab.pings("tenant-a/victim", "10.0.0.21"));

    // The same from a port without port security does rewrite it.
    std::thread::sleep(Duration::from_millis(1200));
    let open = port_mac(&lab, "tenant-a/open");
    claim(&lab, "tenant-a/open", "10.0.0.21");
    assert!(
        eventually("the open port's claim arrives", SOON, || {
            neighbour(&lab, "tenant-a/victim", "10.0.0.21") == open
        }),
        "gratuitous ARP from a port without port security did not arrive: the test shows nothing"
    );
}

/// A DHCP server in `port`'s workload, answering on its interface.
struct Rogue(std::process::Child);

impl Rogue {
    fn start(lab: &TestLab, port: &str, log: &std::path::Path) -> Self {
        let namespace = lab.lab.files().read_state().unwrap().workloads[port]
            .namespace
            .clone();
        let child = neutrino::dataplane::netns::command(&namespace, "dnsmasq")
            .unwrap()
            .args([
                "--no-daemon",
                "--port=0",
                "--conf-file=/dev/null",
                "--interface=eth0",
                "--bind-interfaces",
                "--dhcp-authoritative",
                // Offers at once, without pinging the address first.
                "--no-ping",
                "--dhcp-range=10.0.0.150,10.0.0.160,255.255.255.0",
                "--dhcp-option=3,10.0.0.66",
                &format!(
                    "--dhcp-leasefile={}",
                    log.with_extension("leases").display()
                ),
                &format!("--log-facility={}", log.display()),
                "--log-dhcp",
            ])
            .spawn()
            .unwrap();
        Rogue(child)
    }
}

impl Drop for Rogue {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Counts, in `port`'s workload, the DHCP server packets from `mac`.
fn count_offers_from(lab: &TestLab, port: &str, mac: &str) -> u64 {
    let table = "table inet rogue-count";
    let (_, out) = lab.exec(port, &["nft", "list", "table", "inet", "rogue-count"]);
    if !out.contains("counter") {
        let script = format!(
            "{table} {{\n chain prerouting {{\n type filter hook prerouting priority -300;\n ether saddr {mac} udp sport 67 counter\n }}\n}}\n"
        );
        let (code, out) = lab.exec(port, &["nft", &script]);
        assert_eq!(code, 0, "{out}");
        return 0;
    }
    out.split("packets ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workload_cannot_answer_dhcp() {
    let lab = TestLab::new("guard-dhcp");
    let dir = manifests("guard-dhcp", &network().yaml());
    lab.lab.up(&dir, 2, &lab.name).await.unwrap();
    let attacker = port_mac(&lab, "tenant-a/attacker");
    let open = port_mac(&lab, "tenant-a/open");
    count_offers_from(&lab, "tenant-a/victim", &attacker);
    let _rogue = Rogue::start(&lab, "tenant-a/attacker", &lab.dir.join("rogue.log"));
    std::thread::sleep(Duration::from_millis(500));
    for round in 0..3 {
        let lease = neutrino::lab::workload::dhcp_on(
            &lab.lab.files().read_state().unwrap().workloads["tenant-a/victim"].namespace,
            "eth0",
            &lab.dir.join(format!("victim-{round}")),
        )
        .unwrap();
        assert_eq!((&*lease.ip, &*lease.router), ("10.0.0.22", "10.0.0.1"));
    }
    std::thread::sleep(Duration::from_millis(500));
    let log = std::fs::read_to_string(lab.dir.join("rogue.log")).unwrap_or_default();
    assert!(
        log.contains("DHCPOFFER"),
        "the rogue server answered nothing:\n{log}"
    );
    assert_eq!(
        count_offers_from(&lab, "tenant-a/victim", &attacker),
        0,
        "a DHCP server's packet from the guarded attacker reached the victim"
    );

    // From a port without port security its answers do arrive.
    drop(_rogue);
    let table = lab.exec(
        "tenant-a/victim",
        &["nft", "delete", "table", "inet", "rogue-count"],
    );
    assert_eq!(table.0, 0, "{}", table.1);
    count_offers_from(&lab, "tenant-a/victim", &open);
    let _rogue = Rogue::start(&lab, "tenant-a/open", &lab.dir.join("open.log"));
    std::thread::sleep(Duration::from_millis(500));
    let _ = neutrino::lab::workload::dhcp_on(
        &lab.lab.files().read_state().unwrap().workloads["tenant-a/victim"].namespace,
        "eth0",
        &lab.dir.join("victim-open"),
    );
    assert!(
        count_offers_from(&lab, "tenant-a/victim", &open) > 0,
        "no DHCP answer from a port without port security arrived: the test shows nothing"
    );
}

/// A server behind a security group that lets its replies out and
/// `rules` in, and a client on another node.
fn connections_of(rules: &[Value]) -> Objects {
    let mut all = vec![json!({"direction": "egress", "ethertype": "IPv4"})];
    all.extend(rules.iter().cloned());
    Objects::new()
        .network("tenant-a/blue")
        .subnet("tenant-a/blue-v4", "blue", "10.0.0.0/24", json!({}))
        .port(
            "tenant-a/client",
            "blue",
            "node-1",
            fixed("blue-v4", "10.0.0.21"),
        )
        .port(
            "tenant-a/server",
            "blue",
            "node-2",
            merged(
                fixed("blue-v4", "10.0.0.22"),
                json!({"securityGroups": ["server"]}),
            ),
        )
        .security_group("tenant-a/server", Value::Array(all))
}

fn tcp_rule() -> Value {
    json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
           "portRangeMin": 5000, "portRangeMax": 5000, "remoteIPPrefix": "10.0.0.0/24"})
}

fn icmp_rule() -> Value {
    json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "icmp"})
}

/// An echo server on port 5000, and a client that sends a byte every
/// 100 ms and prints a line for each echo, exiting when one does not come
/// back within 2 s.
const SERVER: &str = r#"
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5000))
s.listen(4)
while True:
    c, _ = s.accept()
    while (b := c.recv(64)):
        c.sendall(b)
"#;
const CLIENT: &str = r#"
import socket, sys, time
c = socket.create_connection(("10.0.0.22", 5000), timeout=5)
c.settimeout(2)
n = 0
while True:
    c.sendall(b"x")
    try:
        if not c.recv(64):
            print("closed", flush=True)
            sys.exit(2)
    except socket.timeout:
        print("stalled", flush=True)
        sys.exit(3)
    n += 1
    print("echo", n, flush=True)
    time.sleep(0.1)
"#;

/// A Python program in `port`'s workload, its output into `out`, killed
/// when dropped.
struct Program(std::process::Child);

impl Program {
    fn start(lab: &TestLab, port: &str, code: &str, out: &std::path::Path) -> Self {
        let namespace = lab.lab.files().read_state().unwrap().workloads[port]
            .namespace
            .clone();
        let file = std::fs::File::create(out).unwrap();
        let child = neutrino::dataplane::netns::command(&namespace, "python3")
            .unwrap()
            .args(["-c", code])
            .stdout(file)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Program(child)
    }

    fn exited(&mut self) -> bool {
        self.0.try_wait().unwrap().is_some()
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn echoes(out: &std::path::Path) -> usize {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    text.lines().filter(|l| l.starts_with("echo")).count()
}

/// The manifests of [`connections_of`] `rules`.
fn connections(tag: &str, rules: &[Value]) -> Manifests {
    manifests(
        &format!("{tag}-{}", rules.len()),
        &connections_of(rules).yaml(),
    )
}

/// A lab of [`connections_of`] whose server's group holds `rules`, with the
/// echo server running and the client's connection carrying echoes.
struct Connected {
    lab: TestLab,
    _server: Program,
    client: Program,
    out: std::path::PathBuf,
}

async fn connected(tag: &str, rules: &[Value]) -> Connected {
    let lab = TestLab::new(tag);
    lab.lab
        .up(&connections(tag, rules), 2, &lab.name)
        .await
        .unwrap();
    let server = Program::start(&lab, "tenant-a/server", SERVER, &lab.dir.join("server.out"));
    std::thread::sleep(Duration::from_millis(500));
    let out = lab.dir.join("client.out");
    let client = Program::start(&lab, "tenant-a/client", CLIENT, &out);
    assert!(
        eventually("the connection carries echoes", SOON, || echoes(&out) >= 5),
        "{}",
        std::fs::read_to_string(&out).unwrap_or_default()
    );
    Connected {
        lab,
        _server: server,
        client,
        out,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_security_group_change_cuts_the_connections_it_no_longer_allows() {
    let tag = "guard-ct";
    let Connected {
        lab,
        _server,
        mut client,
        out,
    } = connected(tag, &[tcp_rule(), icmp_rule()]).await;
    let with = |rules: &[Value]| connections(tag, rules);

    assert!(lab.pings("tenant-a/client", "10.0.0.22"), "ICMP is let in");

    // Another rule of the server's group goes: the connection carries on,
    // and the pings' entries are cut.
    lab.lab.apply(&with(&[tcp_rule()])).await.unwrap();
    let node2 = lab.node("node-2");
    let pings = support::exec_in(&node2, &["conntrack", "-L", "-p", "icmp"]).1;
    let pings: Vec<&str> = (pings.lines())
        .filter(|l| l.contains("dst=10.0.0.22") && l.contains("type=8"))
        .collect();
    assert!(!pings.is_empty(), "no ping entries");
    let cut = neutrino::core::conntrack::CUT_MARK;
    for entry in &pings {
        let mark: u32 = field(entry, "mark").parse().unwrap();
        assert_ne!(mark & cut, 0, "a ping's entry was not cut: {entry}");
    }
    let before = echoes(&out);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !client.exited() && echoes(&out) >= before + 10,
        "an unrelated rule's removal cut the connection:\n{}",
        std::fs::read_to_string(&out).unwrap_or_default()
    );
    assert!(
        !lab.pings("tenant-a/client", "10.0.0.22"),
        "ICMP is no longer let in"
    );

    // Another tenant's connection with the same addresses and ports, in
    // another zone of the server's node, which the cut must leave alone.
    let entry = server_entry(&node2);
    let zone: u16 = field(&entry, "zone").parse().unwrap();
    let sport = field(&entry, "sport");
    let twin = (zone % 65_534 + 1).to_string();
    let insert = format!(
        "conntrack -I --zone {twin} -p tcp -s 10.0.0.21 -d 10.0.0.22 --sport {sport} \
         --dport 5000 --state ESTABLISHED -u SEEN_REPLY,ASSURED -t 600"
    );
    let (code, output) = support::exec_in(&node2, &insert.split_whitespace().collect::<Vec<_>>());
    assert_eq!(code, 0, "{output}");

    // The rule that let it in goes: the connection stops, for good.
    lab.lab.apply(&with(&[])).await.unwrap();
    assert!(
        eventually("the client stalls", SOON, || client.exited()),
        "the connection outlived its rule:\n{}",
        std::fs::read_to_string(&out).unwrap_or_default()
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.ends_with("stalled\n"), "{text}");
    let marked = |zone: &str| {
        let listed = support::exec_in(&node2, &["conntrack", "-L", "--zone", zone]).1;
        let line = (listed.lines())
            .find(|l| l.contains("dport=5000") && l.contains(&format!("sport={sport} ")))
            .unwrap_or_else(|| panic!("no entry in zone {zone}:\n{listed}"))
            .to_string();
        field(&line, "mark").parse::<u32>().unwrap() & cut != 0
    };
    assert!(marked(&zone.to_string()), "the cut entry is marked");
    assert!(!marked(&twin), "the other zone's twin was marked too");
}

/// The server's conntrack entry of the client's connection on `node`.
fn server_entry(node: &str) -> String {
    let listed = support::exec_in(node, &["conntrack", "-L", "-p", "tcp", "--dport", "5000"]).1;
    (listed.lines())
        .find(|l| l.contains("ESTABLISHED"))
        .unwrap_or_else(|| panic!("no connection to port 5000:\n{listed}"))
        .to_string()
}

/// The first `key=value` of a conntrack entry's line.
fn field(line: &str, key: &str) -> String {
    (line.split_whitespace())
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_made_while_the_agent_was_down_still_cuts() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    let tag = "guard-ct-down";
    let Connected {
        lab,
        _server,
        mut client,
        out,
    } = connected(tag, &[tcp_rule()]).await;

    // The server's node loses its agent, and its supervisor is held, so
    // that nothing runs there while the rule goes.
    let supervisor = Pid::from_raw(lab.lab.supervisor_pid("node-2").expect("a supervisor"));
    kill(supervisor, Signal::SIGSTOP).unwrap();
    let agent = lab.lab.agent_pid("node-2").expect("an agent");
    kill(Pid::from_raw(agent), Signal::SIGKILL).unwrap();
    let published = lab.lab.files().read_generation();
    let dir = connections(tag, &[]);
    let (applied, ()) = tokio::join!(lab.lab.apply(&dir), async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while lab.lab.files().read_generation() == published {
            assert!(Instant::now() < deadline, "the change was not published");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let before = echoes(&out);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            !client.exited() && echoes(&out) >= before + 5,
            "the connection stopped while no agent ran:\n{}",
            std::fs::read_to_string(&out).unwrap_or_default()
        );
        // A new agent starts, knowing only what the last one recorded.
        kill(supervisor, Signal::SIGCONT).unwrap();
    });
    applied.unwrap();
    assert_ne!(lab.lab.agent_pid("node-2"), Some(agent));
    assert!(
        eventually("the client stalls", SOON, || client.exited()),
        "the connection outlived its rule across the agent's restart:\n{}",
        std::fs::read_to_string(&out).unwrap_or_default()
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.ends_with("stalled\n"), "{text}");
}

/// An IPv6-only network whose prefix only the nodes' DHCP servers
/// advertise (no router): ports take SLAAC addresses and their DNS servers
/// by stateless DHCPv6. owner's group admits TCP 8080 alone.
fn network_v6() -> Objects {
    Objects::new()
        .network("tenant-a/green")
        .subnet(
            "tenant-a/green-v6",
            "green",
            "2001:db8:40::/64",
            json!({
                "dnsNameservers": ["2001:db8:40::53"],
                "ipv6AddressMode": "dhcpv6-stateless",
                "ipv6RAMode": "dhcpv6-stateless",
            }),
        )
        .port(
            "tenant-a/owner",
            "green",
            "node-1",
            json!({"securityGroups": ["web-only"]}),
        )
        .security_group(
            "tenant-a/web-only",
            json!([
                {"direction": "ingress", "ethertype": "IPv6", "protocol": "tcp",
                 "portRangeMin": 8080, "portRangeMax": 8080},
                {"direction": "egress", "ethertype": "IPv6"},
            ]),
        )
        .port("tenant-a/victim", "green", "node-2", json!({}))
        .port("tenant-a/attacker", "green", "node-2", json!({}))
        .port(
            "tenant-a/open",
            "green",
            "node-1",
            json!({"portSecurity": false}),
        )
}

/// Runs tests/support/nd-send.py in `port`'s workload.
fn nd_send(lab: &TestLab, port: &str, args: &[&str]) {
    let (code, out) = support::python(lab, port, "nd-send.py", args);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ipv6_takes_slaac_without_a_router_and_neighbour_discovery_passes_the_groups() {
    let lab = TestLab::new("guard-v6");
    let dir = manifests("guard-v6", &network_v6().yaml());
    lab.lab.up(&dir, 2, &lab.name).await.unwrap();
    let state = lab.lab.files().read_state().unwrap();
    let lease = state.workloads["tenant-a/victim"].lease.clone().unwrap();
    assert_eq!(lease.ipv6.len(), 1, "{lease:?}");
    assert_eq!(
        (lease.ipv6[0].by.as_str(), lease.ipv6[0].dns.as_str()),
        ("SLAAC", "2001:db8:40::53")
    );
    // The DHCP servers advertise the prefix, not themselves as a router.
    let (_, routes) = lab.exec("tenant-a/victim", &["ip", "-6", "route", "show", "default"]);
    assert!(routes.trim().is_empty(), "{routes}");

    // owner's group admits TCP 8080 and no ICMPv6: neighbour discovery
    // still finds it (a connection opens), an echo request does not.
    let owner = ipv6_of(&lab, "tenant-a/owner");
    let server = std::thread::spawn({
        let (namespace, _) = (state.workloads["tenant-a/owner"].namespace.clone(), ());
        move || {
            support::exec_in(
                &namespace,
                &[
                    "timeout",
                    "10",
                    "python3",
                    "-c",
                    "import socket; s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('::', 8080)); s.listen(); c, _ = s.accept(); c.sendall(b'hello')",
                ],
            )
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let (code, out) = lab.exec("tenant-a/victim", &["python3", "-c",
        &format!("import socket; s = socket.create_connection(('{owner}', 8080), timeout=5); print(s.recv(5).decode())")]);
    assert_eq!((code, out.trim()), (0, "hello"), "{out}");
    let _ = server.join();
    let (code, _) = lab.exec("tenant-a/victim", &["ping", "-c", "1", "-W", "1", &owner]);
    assert_ne!(code, 0, "owner's group admits no ICMPv6 echo");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workload_cannot_take_a_neighbours_ipv6_address_or_advertise_itself_as_a_router() {
    let lab = TestLab::new("guard-nd");
    let dir = manifests("guard-nd", &network_v6().yaml());
    lab.lab.up(&dir, 2, &lab.name).await.unwrap();
    let open = ipv6_of(&lab, "tenant-a/open");
    let open_mac = port_mac(&lab, "tenant-a/open");
    let attacker = port_mac(&lab, "tenant-a/attacker");
    assert!(
        lab.exec("tenant-a/victim", &["ping", "-c", "1", "-W", "2", &open])
            .0
            == 0
    );
    assert_eq!(neighbour(&lab, "tenant-a/victim", &open), open_mac);
    std::thread::sleep(Duration::from_millis(1200));

    // A neighbour advertisement claiming open's address for the attacker's
    // MAC, and a router advertisement of a prefix of its own.
    nd_send(&lab, "tenant-a/attacker", &["na", &open, &attacker]);
    nd_send(&lab, "tenant-a/attacker", &["ra", "2001:db8:bad::"]);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        neighbour(&lab, "tenant-a/victim", &open),
        open_mac,
        "the guarded attacker rewrote the victim's neighbour entry"
    );
    let (_, addresses) = lab.exec(
        "tenant-a/victim",
        &["ip", "-6", "addr", "show", "dev", "eth0"],
    );
    assert!(!addresses.contains("2001:db8:bad:"), "{addresses}");
    let (_, routes) = lab.exec("tenant-a/victim", &["ip", "-6", "route", "show", "default"]);
    assert!(
        routes.trim().is_empty(),
        "the guarded attacker became a default router: {routes}"
    );

    // The same from the port without port security arrives: its claim on
    // its own address for the attacker's MAC, and its advertisement.
    std::thread::sleep(Duration::from_millis(1200));
    nd_send(&lab, "tenant-a/open", &["na", &open, &attacker]);
    nd_send(&lab, "tenant-a/open", &["ra", "2001:db8:bad::"]);
    assert!(
        eventually("the open port's advertisements arrive", SOON, || {
            let (_, routes) =
                lab.exec("tenant-a/victim", &["ip", "-6", "route", "show", "default"]);
            neighbour(&lab, "tenant-a/victim", &open) == attacker && !routes.trim().is_empty()
        }),
        "neighbour and router advertisements from a port without port security did not arrive: the test shows nothing"
    );
}
