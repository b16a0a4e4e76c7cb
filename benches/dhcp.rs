//! One static host removed from a DHCP server holding many, in dnsmasq
//! CPU time, beside dnsmasq as Neutron runs it (one hosts file, rewritten,
//! then SIGHUP), measured in the same run. Needs root and dnsmasq.
//! `NEUTRINO_BENCH_HOSTS` picks the sizes (default `250,10000`),
//! `NEUTRINO_BENCH_ROUNDS` the rounds (default 5); rounds alternate which
//! server goes first, and the min–max of each and of the rounds' ratios is
//! printed. The servers hold no leases: what is measured is what a removal
//! makes dnsmasq read again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use neutrino::core::Key;
use neutrino::core::allocate::Mac;
use neutrino::core::plan::{DhcpHost, DhcpPlan};
use neutrino::dataplane::dnsmasq::Dnsmasq;
use neutrino::dataplane::netns;

mod support;
use support::{Namespace, range, ratios, require_root, setting, sizes};

fn host(n: usize) -> DhcpHost {
    let n = n as u32;
    let [_, _, a, b] = n.to_be_bytes();
    DhcpHost {
        mac: Mac([2, 0, 0, 1, a, b]),
        ip: std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 1, 0, 1)) + n).into(),
        hostname: format!("vm-{n}"),
    }
}

fn plan(namespace: &str, hosts: usize) -> DhcpPlan {
    DhcpPlan {
        subnet: Key::new("bench", "big"),
        network: Key::new("bench", "net"),
        namespace: namespace.into(),
        bridge: "ntb-bench".into(),
        bridge_port: "ntd-bench".into(),
        interface: "ns-bench".into(),
        mac: Mac([2, 0, 0, 0, 0, 1]),
        cidr: "10.1.0.0/16".parse().unwrap(),
        address: "10.1.255.254/16".parse().unwrap(),
        router: None,
        dns: vec![],
        routes: vec![],
        mtu: 1450,
        lease_seconds: 3600,
        hosts: (0..hosts).map(host).collect(),
        ipv6_address_mode: None,
        advertise: false,
    }
}

/// A namespace with the server's interface up and addressed.
fn namespace(name: &str) -> Namespace {
    let namespace = Namespace::create(name);
    for args in [
        &[
            "link", "add", "ns-bench", "type", "veth", "peer", "name", "ns-peer",
        ][..],
        &["link", "set", "ns-bench", "up"][..],
        &["link", "set", "ns-peer", "up"][..],
        &["addr", "add", "10.1.255.254/16", "dev", "ns-bench"][..],
    ] {
        let status = netns::command(name, "ip")
            .unwrap()
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "ip {args:?}");
    }
    namespace
}

/// The CPU time a process has used so far.
fn cpu(pid: i32) -> Duration {
    let text = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap();
    Duration::from_nanos(text.split_whitespace().next().unwrap().parse().unwrap())
}

/// What `change` costs the process `pid`, once it is idle again.
fn cost(pid: i32, change: impl FnOnce()) -> Duration {
    let settle = || {
        let mut last = cpu(pid);
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let now = cpu(pid);
            if now == last {
                return now;
            }
            last = now;
        }
    };
    let before = settle();
    change();
    settle() - before
}

fn pid(file: &Path) -> i32 {
    for _ in 0..100 {
        if let Some(pid) = std::fs::read_to_string(file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
        {
            return pid;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no pid in {}", file.display());
}

/// dnsmasq as Neutron's DHCP agent runs it: one hosts file, rewritten
/// whole and read again on SIGHUP.
struct Neutron {
    dir: PathBuf,
    pid: i32,
}

impl Neutron {
    fn start(namespace: &str, dir: PathBuf, hosts: &[DhcpHost]) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        let mut neutron = Self { dir, pid: 0 };
        neutron.write(hosts);
        let d = |name: &str| neutron.dir.join(name).display().to_string();
        let status = netns::command(namespace, "dnsmasq")
            .unwrap()
            .args([
                "--conf-file=/dev/null".into(),
                "--no-resolv".into(),
                "--no-hosts".into(),
                "--port=0".into(),
                "--interface=ns-bench".into(),
                "--except-interface=lo".into(),
                "--bind-interfaces".into(),
                "--dhcp-range=10.1.0.0,static,255.255.0.0,3600".into(),
                "--dhcp-ignore=tag:!known".into(),
                format!("--dhcp-hostsfile={}", d("host")),
                "--dhcp-lease-max=65536".into(),
                format!("--dhcp-leasefile={}", d("leases")),
                format!("--pid-file={}", d("pid")),
                "--user=root".into(),
            ])
            .status()
            .unwrap();
        assert!(status.success());
        neutron.pid = pid(&neutron.dir.join("pid"));
        neutron
    }

    fn write(&self, hosts: &[DhcpHost]) {
        let text: String = hosts
            .iter()
            .map(|h| format!("{},{},{}\n", h.mac, h.ip, h.hostname))
            .collect();
        let temporary = self.dir.join(".host.tmp");
        std::fs::write(&temporary, text).unwrap();
        std::fs::rename(&temporary, self.dir.join("host")).unwrap();
    }

    fn set(&self, hosts: &[DhcpHost]) {
        self.write(hosts);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap();
    }
}

impl Drop for Neutron {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn main() {
    require_root();
    let sizes = sizes("NEUTRINO_BENCH_HOSTS", "250,10000");
    let rounds = setting("NEUTRINO_BENCH_ROUNDS", 5).max(1);
    let tag = std::process::id();
    println!("{rounds} rounds, dnsmasq CPU, min–max   neutrino (ms)    Neutron (ms)");
    for hosts in sizes {
        let ours_ns = namespace(&format!("nt-bench-dhcp-{tag}-{hosts}"));
        let raw_ns = namespace(&format!("nt-bench-neutron-{tag}-{hosts}"));
        let state = std::env::temp_dir().join(format!("neutrino-bench-dhcp-{tag}"));
        let dnsmasq = Dnsmasq::new(state.join("ours"));
        let full = plan(&ours_ns.0, hosts);
        let (_, errors) = dnsmasq.sync(std::slice::from_ref(&full));
        assert!(errors.is_empty(), "{errors:?}");
        let ours_pid = dnsmasq.pid(&ours_ns.0).expect("neutrino's dnsmasq runs");
        let neutron = Neutron::start(&raw_ns.0, state.join("neutron"), &full.hosts);

        let mut ours = Vec::new();
        let mut raw = Vec::new();
        let mut sync_time = Vec::new();
        for round in 0..rounds {
            // A different host each round, put back (unmeasured) after.
            let mut fewer = full.clone();
            fewer.hosts.remove(round * 7 % hosts);
            let mut ours_turn = || {
                let mut took = Duration::ZERO;
                ours.push(cost(ours_pid, || {
                    let start = Instant::now();
                    let (_, errors) = dnsmasq.sync(std::slice::from_ref(&fewer));
                    took = start.elapsed();
                    assert!(errors.is_empty(), "{errors:?}");
                }));
                sync_time.push(took);
                let (_, errors) = dnsmasq.sync(std::slice::from_ref(&full));
                assert!(errors.is_empty(), "{errors:?}");
            };
            let mut raw_turn = || {
                raw.push(cost(neutron.pid, || neutron.set(&fewer.hosts)));
                neutron.set(&full.hosts);
            };
            if round % 2 == 0 {
                ours_turn();
                raw_turn();
            } else {
                raw_turn();
                ours_turn();
            }
        }
        let ms = |d: &[Duration]| d.iter().map(|d| d.as_secs_f64() * 1e3).collect::<Vec<_>>();
        let (ours, raw, sync_time) = (ms(&ours), ms(&raw), ms(&sync_time));
        println!(
            "one host of {hosts:>6} removed  {:>15} {:>15}  ratio {}   (the agent's sync: {} ms)",
            range(&ours, 2),
            range(&raw, 2),
            ratios(&ours, &raw),
            range(&sync_time, 2)
        );
        drop(dnsmasq.sync(&[]));
        let _ = std::fs::remove_dir_all(&state);
    }
}
