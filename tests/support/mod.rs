//! Helpers for the tests that need root: network namespaces with unique
//! names that are removed when the test ends, however it ends.

#![allow(dead_code)]

pub mod chart;
pub mod control_plane;
pub mod examples;
pub mod fake_api;
pub mod next_version;
pub mod nodes;
pub mod objects;
pub mod synthetic;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use neutrino::dataplane::netns;

/// Whether `done` comes to hold within `within`, asked every 200 ms; when
/// it does not, says so naming `what`.
#[must_use]
pub fn eventually(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() >= deadline {
            eprintln!("{what}: not within {within:?}");
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    true
}

/// [`eventually`], for a check that awaits.
#[must_use]
pub async fn eventually_async(
    what: &str,
    within: Duration,
    mut done: impl AsyncFnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + within;
    while !done().await {
        if Instant::now() >= deadline {
            eprintln!("{what}: not within {within:?}");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    true
}

/// A unique prefix for this test process's kernel objects.
pub fn unique(tag: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "t{}-{tag}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Network namespaces removed on drop, even when the test panics.
pub struct Namespaces {
    names: Vec<String>,
    prefix: String,
}

impl Namespaces {
    pub fn new(tag: &str) -> Self {
        Self {
            names: Vec::new(),
            prefix: unique(tag),
        }
    }

    /// The prefix every namespace of this guard starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Creates `<prefix>-<name>` and returns its full name.
    pub fn create(&mut self, name: &str) -> String {
        let full = format!("{}-{name}", self.prefix);
        netns::create(&full).expect("creating a namespace needs root");
        self.names.push(full.clone());
        full
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        // Anything else created under the prefix (by the code under test) goes too.
        for name in netns::list().unwrap_or_default() {
            if name.starts_with(&self.prefix) {
                let _ = netns::delete(&name);
            }
        }
        for name in &self.names {
            let _ = netns::delete(name);
        }
    }
}

/// Whether this process may create namespaces; tests that need it fail
/// with this message otherwise, rather than pretending to pass.
pub fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test needs root (network namespaces)"
    );
}

/// Runs a command in the network namespace `namespace`; its exit code and
/// output (standard output, then standard error).
pub fn exec_in(namespace: &str, command: &[&str]) -> (i32, String) {
    let output = netns::command(namespace, command[0])
        .unwrap()
        .args(&command[1..])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), text)
}

/// A lab in a state directory and with a namespace prefix of its own,
/// brought down when the test ends, however it ends.
pub struct TestLab {
    pub lab: neutrino::lab::Lab,
    pub name: String,
    pub dir: std::path::PathBuf,
}

impl TestLab {
    pub fn new(tag: &str) -> Self {
        require_root();
        let name = unique(tag);
        let dir = std::env::temp_dir().join(format!("neutrino-{name}"));
        let lab = neutrino::lab::Lab::new(&dir, env!("CARGO_BIN_EXE_neutrino"));
        Self { lab, name, dir }
    }

    /// The namespace of a lab node.
    pub fn node(&self, node: &str) -> String {
        format!("{}-{node}", self.name)
    }

    /// Runs a command in a port's workload; its exit code and output.
    pub fn exec(&self, port: &str, command: &[&str]) -> (i32, String) {
        let (namespace, name) = port.split_once('/').unwrap();
        let workload = self
            .lab
            .workload_namespace(&neutrino::core::Key::new(namespace, name))
            .unwrap();
        exec_in(&workload, command)
    }

    /// Whether `from` reaches `ip` by ping.
    pub fn pings(&self, from: &str, ip: &str) -> bool {
        self.exec(from, &["ping", "-c", "2", "-i", "0.2", "-W", "1", ip])
            .0
            == 0
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if self.lab.files().exists() {
            let _ = self.lab.down();
        }
        for name in netns::list().unwrap_or_default() {
            if name.starts_with(&self.name) {
                let _ = netns::delete(&name);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh folder of manifests, removed when dropped.
pub struct Manifests(std::path::PathBuf);

impl std::ops::Deref for Manifests {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Manifests {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes manifests into a fresh folder.
pub fn manifests(tag: &str, yaml: &str) -> Manifests {
    let dir = std::env::temp_dir().join(format!("neutrino-manifests-{}", unique(tag)));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("objects.yaml"), yaml).unwrap();
    Manifests(dir)
}

/// The MAC a port's workload was plugged with.
pub fn port_mac(lab: &TestLab, port: &str) -> String {
    lab.lab.files().read_state().unwrap().workloads[port]
        .mac
        .clone()
}

/// `port`'s first IPv6 address, as its workload took it.
pub fn ipv6_of(lab: &TestLab, port: &str) -> String {
    let state = lab.lab.files().read_state().unwrap();
    state.workloads[port].lease.clone().unwrap().ipv6[0]
        .address
        .clone()
}

/// The MAC `port`'s workload holds for `ip`, as `ip neigh` shows it.
pub fn neighbour(lab: &TestLab, port: &str, ip: &str) -> String {
    let (_, out) = lab.exec(port, &["ip", "neigh", "show", ip, "dev", "eth0"]);
    out.split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .unwrap_or("")
        .to_string()
}

/// Runs the Python script `tests/support/SCRIPT` with `args` in `port`'s
/// workload; its exit code and output.
pub fn python(lab: &TestLab, port: &str, script: &str, args: &[&str]) -> (i32, String) {
    let script = control_plane::repository()
        .join("tests/support")
        .join(script);
    let mut command = vec!["python3", script.to_str().unwrap()];
    command.extend_from_slice(args);
    lab.exec(port, &command)
}

/// What neutrino left in the kernels of a lab's nodes: links it made, its
/// DHCP and router namespaces, rules in its chains, ipsets, nftables
/// tables, and dnsmasq processes. A running agent keeps only its empty hook chains.
pub async fn kernel_leftovers(lab: &TestLab, nodes: &[&str]) -> Vec<String> {
    use neutrino::dataplane::netlink::Netlink;
    let mut found = Vec::new();
    let namespaces = netns::list().unwrap_or_default();
    for node in nodes {
        let namespace = lab.node(node);
        let kernel = Netlink::connect(Some(&namespace)).await.unwrap();
        let observed = kernel.observe().await.unwrap();
        found.extend(
            observed
                .links
                .iter()
                .filter(|l| l.is_ours())
                .map(|l| format!("{node}: link {}", l.name)),
        );
        found.extend(
            namespaces
                .iter()
                .filter(|n| n.starts_with(&format!("{namespace}-")))
                .map(|n| format!("{node}: namespace {n}")),
        );
        found.extend(
            saved_rules(&namespace)
                .into_iter()
                .filter(|(_, l)| {
                    l.starts_with("-A neutrino-")
                        || (l.starts_with(":neutrino-")
                            && !l.starts_with(":neutrino-FORWARD ")
                            && !l.starts_with(":neutrino-ZONES "))
                })
                .map(|(save, l)| format!("{node}: {save}: {l}")),
        );
        let output = netns::command(&namespace, "ipset")
            .unwrap()
            .args(["list", "-n"])
            .output()
            .unwrap();
        found.extend(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter(|s| s.starts_with("nt4-") || s.starts_with("nt6-"))
                .map(|s| format!("{node}: ipset {s}")),
        );
        let output = netns::command(&namespace, "nft")
            .unwrap()
            .args(["list", "tables"])
            .output()
            .unwrap();
        found.extend(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter(|t| t.contains(" neutrino"))
                .map(|t| format!("{node}: nftables {t}")),
        );
    }
    let dir = lab.dir.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let program = cmdline.split(' ').next().unwrap_or_default();
        if program.ends_with("dnsmasq") && cmdline.contains(&dir) {
            found.push(format!("dnsmasq: {cmdline}"));
        }
    }
    found
}

/// [`kernel_leftovers`] and the empty hook chains and their jumps too: what
/// a node must not hold once neutrino is removed from it.
pub async fn every_trace(lab: &TestLab, nodes: &[&str]) -> Vec<String> {
    let mut found = kernel_leftovers(lab, nodes).await;
    for node in nodes {
        found.extend(
            saved_rules(&lab.node(node))
                .into_iter()
                .filter(|(_, l)| {
                    l.contains("neutrino-") || l.contains(" nt-") || l.starts_with(":nt-")
                })
                .map(|(save, l)| format!("{node}: {save}: {l}")),
        );
    }
    found
}

/// Someone else's bridge, chain (jumped to from FORWARD) and ipset on a
/// node, which removing neutrino must leave as they are; returns a reading
/// of them to compare with later.
pub fn add_foreign_objects(namespace: &str) -> Vec<String> {
    let run = |program: &str, args: &[&str]| {
        let status = netns::command(namespace, program)
            .unwrap()
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "{program} {args:?}");
    };
    run("ip", &["link", "add", "foreign-br", "type", "bridge"]);
    run("iptables", &["-N", "FOREIGN"]);
    run(
        "iptables",
        &["-A", "FOREIGN", "-s", "10.9.9.9/32", "-j", "DROP"],
    );
    run("iptables", &["-A", "FORWARD", "-j", "FOREIGN"]);
    run("ipset", &["create", "foreign-set", "hash:ip"]);
    let found = foreign_objects(namespace);
    assert_eq!(found.len(), 5, "{found:?}");
    found
}

/// What of [`add_foreign_objects`] is in `namespace`.
pub fn foreign_objects(namespace: &str) -> Vec<String> {
    let mut found: Vec<String> = saved_rules(namespace)
        .into_iter()
        .map(|(save, l)| format!("{save}: {l}"))
        .filter(|l| l.contains("FOREIGN"))
        .collect();
    for (program, args) in [
        ("ip", &["-o", "link", "show", "foreign-br"][..]),
        ("ipset", &["list", "-n"][..]),
    ] {
        let output = netns::command(namespace, program)
            .unwrap()
            .args(args)
            .output()
            .unwrap();
        found.extend(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter(|l| l.contains("foreign"))
                .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" ")),
        );
    }
    found
}

/// Every line both iptables backends' `iptables-save` and `ip6tables-save`
/// print in `namespace`, with the program that printed it.
pub fn saved_rules(namespace: &str) -> Vec<(&'static str, String)> {
    [
        "iptables-nft-save",
        "ip6tables-nft-save",
        "iptables-legacy-save",
        "ip6tables-legacy-save",
    ]
    .into_iter()
    .flat_map(|save| {
        let output = netns::command(namespace, save).unwrap().output().unwrap();
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| (save, l.to_string()))
            .collect::<Vec<_>>()
    })
    .collect()
}
