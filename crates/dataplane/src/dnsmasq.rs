//! DHCP with dnsmasq: one process per planned server, inside the server's
//! namespace, answering only the hosts it was given.
//!
//! Hosts and options live in directories dnsmasq watches, one file per
//! host, so a new or changed host reaches a running server without a
//! restart; a removed host takes a SIGHUP, which re-reads the files and
//! keeps the process and its leases. A server that died is started again; a
//! running one left by an earlier agent is adopted as it is.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::netns;
use neutrino_core::plan::DhcpPlan;

/// What a sync did, for logs and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DhcpReport {
    pub started: Vec<String>,
    pub restarted: Vec<String>,
    pub reloaded: Vec<String>,
    pub stopped: Vec<String>,
}

/// A DHCP server that could not be brought to its plan.
#[derive(Debug, thiserror::Error)]
#[error("DHCP server of subnet {subnet} in {namespace}: {what}: {cause}")]
pub struct DhcpError {
    pub subnet: String,
    pub namespace: String,
    pub what: String,
    pub cause: io::Error,
}

/// The dnsmasq servers of one node, with their files under `dir`.
pub struct Dnsmasq {
    dir: PathBuf,
    binary: String,
}

/// The command line of a server: what a restart is needed for.
fn arguments(plan: &DhcpPlan, dir: &Path) -> Vec<String> {
    let d = |name: &str| dir.join(name).display().to_string();
    let cidr = plan.cidr;
    let range = if cidr.addr().is_ipv4() {
        format!(
            "{},static,{},{}",
            cidr.network(),
            cidr.netmask(),
            plan.lease_seconds
        )
    } else {
        format!(
            "{},static,{},{}",
            cidr.network(),
            cidr.prefix_len(),
            plan.lease_seconds
        )
    };
    vec![
        "--conf-file=/dev/null".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--port=0".into(),
        format!("--interface={}", plan.interface),
        "--except-interface=lo".into(),
        "--bind-interfaces".into(),
        format!("--dhcp-range={range}"),
        "--dhcp-ignore=tag:!known".into(),
        format!("--dhcp-hostsdir={}", d("hosts")),
        format!("--dhcp-optsdir={}", d("options")),
        format!("--dhcp-leasefile={}", d("leases")),
        format!("--pid-file={}", d("pid")),
        format!("--log-facility={}", d("log")),
        "--log-dhcp".into(),
        "--user=root".into(),
    ]
}

/// The options file: gateway, DNS servers, classless routes and MTU. An
/// option written without a value is one dnsmasq must not send (it would
/// offer itself as the router otherwise).
fn options(plan: &DhcpPlan) -> String {
    let mut lines = Vec::new();
    if plan.cidr.addr().is_ipv4() {
        lines.push(match plan.router {
            Some(router) => format!("option:router,{router}"),
            None => "option:router".into(),
        });
        if !plan.dns.is_empty() {
            let dns: Vec<String> = plan.dns.iter().map(ToString::to_string).collect();
            lines.push(format!("option:dns-server,{}", dns.join(",")));
        }
        if !plan.routes.is_empty() {
            let routes: Vec<String> = plan
                .routes
                .iter()
                .map(|r| format!("{},{}", r.destination, r.nexthop))
                .collect();
            lines.push(format!(
                "option:classless-static-route,{}",
                routes.join(",")
            ));
        }
        lines.push(format!("option:mtu,{}", plan.mtu));
    } else if !plan.dns.is_empty() {
        let dns: Vec<String> = plan.dns.iter().map(|d| format!("[{d}]")).collect();
        lines.push(format!("option6:dns-server,{}", dns.join(",")));
    }
    lines.join("\n") + "\n"
}

/// One host file's name and content.
fn host_files(plan: &DhcpPlan) -> Vec<(String, String)> {
    plan.hosts
        .iter()
        .map(|h| {
            let ip = if h.ip.is_ipv6() {
                format!("[{}]", h.ip)
            } else {
                h.ip.to_string()
            };
            (
                h.mac.to_string().replace(':', ""),
                format!("{},{ip},{}\n", h.mac, h.hostname),
            )
        })
        .collect()
}

/// Writes `content` to `path` unless it already holds exactly that; says
/// whether it wrote. A rename makes the change atomic for dnsmasq's watch.
fn write_if_changed(path: &Path, content: &str) -> io::Result<bool> {
    if fs::read_to_string(path).is_ok_and(|c| c == content) {
        return Ok(false);
    }
    let temporary = path.with_extension("tmp");
    fs::write(&temporary, content)?;
    fs::rename(&temporary, path)?;
    Ok(true)
}

/// The pid in `dir`'s pid file, if that process is a dnsmasq of this server.
fn running(dir: &Path) -> Option<Pid> {
    let pid: i32 = fs::read_to_string(dir.join("pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline);
    let ours = cmdline.contains(&format!("--pid-file={}", dir.join("pid").display()));
    ours.then_some(Pid::from_raw(pid))
}

fn stop(pid: Pid) {
    let _ = kill(pid, Signal::SIGTERM);
    for _ in 0..100 {
        if kill(pid, None).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = kill(pid, Signal::SIGKILL);
}

impl Dnsmasq {
    /// Servers keep their files under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            binary: "dnsmasq".into(),
        }
    }

    fn server_dir(&self, namespace: &str) -> PathBuf {
        self.dir.join(namespace)
    }

    /// The pid of the server in `namespace`, if it runs.
    pub fn pid(&self, namespace: &str) -> Option<i32> {
        running(&self.server_dir(namespace)).map(Pid::as_raw)
    }

    /// Brings the servers to `plans`.
    pub fn sync(&self, plans: &[DhcpPlan]) -> (DhcpReport, Vec<DhcpError>) {
        let mut report = DhcpReport::default();
        let mut errors = Vec::new();
        for plan in plans {
            if let Err((what, source)) = self.sync_one(plan, &mut report) {
                errors.push(DhcpError {
                    subnet: plan.subnet.to_string(),
                    namespace: plan.namespace.clone(),
                    what,
                    cause: source,
                });
            }
        }
        let wanted: BTreeSet<&str> = plans.iter().map(|p| p.namespace.as_str()).collect();
        for entry in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if wanted.contains(name.as_str()) {
                continue;
            }
            if let Some(pid) = running(&entry.path()) {
                stop(pid);
            }
            let _ = fs::remove_dir_all(entry.path());
            report.stopped.push(name);
        }
        (report, errors)
    }

    fn sync_one(
        &self,
        plan: &DhcpPlan,
        report: &mut DhcpReport,
    ) -> Result<(), (String, io::Error)> {
        let dir = self.server_dir(&plan.namespace);
        let hosts_dir = dir.join("hosts");
        let options_dir = dir.join("options");
        let io = |what: &str| {
            let what = what.to_string();
            move |e| (what, e)
        };
        fs::create_dir_all(&hosts_dir).map_err(io("creating its directory"))?;
        fs::create_dir_all(&options_dir).map_err(io("creating its directory"))?;
        write_if_changed(&options_dir.join("options"), &options(plan))
            .map_err(io("writing its options"))?;

        let files = host_files(plan);
        let wanted: BTreeSet<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
        for (name, content) in &files {
            write_if_changed(&hosts_dir.join(name), content).map_err(io("writing a host"))?;
        }
        let mut removed = false;
        for entry in fs::read_dir(&hosts_dir)
            .map_err(io("listing its hosts"))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !wanted.contains(name.as_str()) {
                fs::remove_file(entry.path()).map_err(io("removing a host"))?;
                removed = true;
            }
        }

        let args = arguments(plan, &dir);
        let recorded = fs::read_to_string(dir.join("args")).unwrap_or_default();
        let same_args = recorded == args.join("\n");
        match running(&dir) {
            Some(pid) if same_args => {
                if removed {
                    // Deleted host files are only forgotten on a reload.
                    kill(pid, Signal::SIGHUP)
                        .map_err(|e| ("reloading".to_string(), io::Error::from(e)))?;
                    report.reloaded.push(plan.namespace.clone());
                }
                Ok(())
            }
            previous => {
                if let Some(pid) = previous {
                    stop(pid);
                    report.restarted.push(plan.namespace.clone());
                } else {
                    report.started.push(plan.namespace.clone());
                }
                fs::write(dir.join("args"), args.join("\n"))
                    .map_err(io("recording its arguments"))?;
                let status = netns::command(&plan.namespace, &self.binary)
                    .map_err(io("entering its namespace"))?
                    .args(&args)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .output()
                    .map_err(io("starting dnsmasq (is it installed?)"))?;
                if !status.status.success() {
                    let message = String::from_utf8_lossy(&status.stderr).trim().to_string();
                    return Err(("starting dnsmasq".into(), io::Error::other(message)));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use neutrino_core::Key;
    use neutrino_core::allocate::Mac;
    use neutrino_core::plan::{DhcpHost, RoutePlan};

    fn plan() -> DhcpPlan {
        DhcpPlan {
            subnet: Key::new("t", "s"),
            network: Key::new("t", "n"),
            namespace: "nt-dhcp-x".into(),
            bridge: "ntb-x".into(),
            bridge_port: "ntd-x".into(),
            interface: "ns-x".into(),
            mac: Mac([2, 0, 0, 0, 0, 1]),
            cidr: "10.0.0.0/24".parse().unwrap(),
            address: "10.0.0.2/24".parse().unwrap(),
            router: None,
            dns: vec!["10.0.0.53".parse().unwrap()],
            routes: vec![RoutePlan {
                destination: "192.168.0.0/16".parse().unwrap(),
                nexthop: "10.0.0.254".parse().unwrap(),
            }],
            mtu: 1450,
            lease_seconds: 600,
            hosts: vec![DhcpHost {
                mac: Mac([2, 0, 0, 0, 0, 9]),
                ip: "10.0.0.9".parse().unwrap(),
                hostname: "vm".into(),
            }],
        }
    }

    #[test]
    fn options_never_offer_the_server_as_router() {
        let text = options(&plan());
        assert!(text.lines().any(|l| l == "option:router"), "{text}");
        assert!(
            text.contains("option:classless-static-route,192.168.0.0/16,10.0.0.254"),
            "{text}"
        );
        assert!(text.contains("option:mtu,1450"), "{text}");
        assert!(text.contains("option:dns-server,10.0.0.53"), "{text}");
    }

    #[test]
    fn hosts_and_range_are_static() {
        let args = arguments(&plan(), Path::new("/d"));
        assert!(
            args.contains(&"--dhcp-range=10.0.0.0,static,255.255.255.0,600".to_string()),
            "{args:?}"
        );
        assert!(args.contains(&"--dhcp-ignore=tag:!known".to_string()));
        assert_eq!(host_files(&plan())[0].1, "02:00:00:00:00:09,10.0.0.9,vm\n");
    }
}
