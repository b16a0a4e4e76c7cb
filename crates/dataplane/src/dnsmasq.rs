//! DHCP with dnsmasq: one process per planned server, inside the server's
//! namespace, answering only the hosts it was given. What each server is
//! given, and what to change, is `neutrino_core::dnsmasq`'s; this adapter
//! reads the servers' directories and processes and makes the changes. A
//! server that died is started again; a running one left by an earlier
//! agent is adopted as it is.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::backend::{DhcpServers, Failure};
use super::netns;
use neutrino_core::dnsmasq::{DhcpChange, ObservedServer, diff, listed, server};
use neutrino_core::plan::DhcpPlan;

/// What a sync did, for logs and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DhcpReport {
    pub started: Vec<String>,
    pub restarted: Vec<String>,
    pub reloaded: Vec<String>,
    pub stopped: Vec<String>,
    /// Leases released, as `IP MAC in NAMESPACE`.
    pub released: Vec<String>,
}

/// A DHCP server that could not be brought to its plan.
#[derive(Debug, thiserror::Error)]
#[error("DHCP server in {namespace}: {what}: {cause}")]
pub struct DhcpError {
    pub namespace: String,
    pub what: String,
    pub cause: io::Error,
}

/// The dnsmasq servers of one node, with their files under `dir`.
pub struct Dnsmasq {
    dir: PathBuf,
    binary: String,
    /// How often the servers' files are read again to catch what was
    /// changed behind the agent's back; in between, what it wrote is known.
    drift_every: Duration,
    /// Each server's files as last read or written, and when they were read.
    known: Mutex<BTreeMap<String, ObservedServer>>,
    read_at: Mutex<Option<Instant>>,
}

/// Writes `content` to `path` so that dnsmasq never reads it half written.
fn write(path: &Path, content: &str) -> io::Result<()> {
    super::files::write_atomic(path, content.as_bytes())
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
            drift_every: Duration::ZERO,
            known: Mutex::new(BTreeMap::new()),
            read_at: Mutex::new(None),
        }
    }

    /// Reads the servers' files at most once per `every` (the agent's
    /// resync interval); syncs in between trust what was written.
    pub fn checking_drift_every(mut self, every: Duration) -> Self {
        self.drift_every = every;
        self
    }

    fn known(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ObservedServer>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn server_dir(&self, namespace: &str) -> PathBuf {
        self.dir.join(namespace)
    }

    /// The pid of the server in `namespace`, if it runs.
    pub fn pid(&self, namespace: &str) -> Option<i32> {
        running(&self.server_dir(namespace)).map(Pid::as_raw)
    }

    /// Brings the servers to `plans`.
    pub fn sync(&self, plans: &[DhcpPlan]) -> (DhcpReport, Vec<Failure>) {
        let wanted: Vec<_> = plans
            .iter()
            .map(|plan| server(plan, &self.server_dir(&plan.namespace)))
            .collect();
        self.apply(&diff(&wanted, &self.observe()))
    }

    /// One server's directory as it is.
    fn observe_one(&self, namespace: &str) -> ObservedServer {
        let dir = self.server_dir(namespace);
        let read = |path: PathBuf| fs::read_to_string(path).ok();
        let mut added = BTreeMap::new();
        for entry in fs::read_dir(dir.join("hosts"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            // A temporary file of an interrupted write is a host to drop.
            added.insert(name, read(entry.path()).unwrap_or_default());
        }
        let listed = listed(&read(dir.join("hostsfile")).unwrap_or_default());
        ObservedServer {
            prepared: dir.join("hosts").is_dir() && dir.join("options").is_dir(),
            args: read(dir.join("args"))
                .map(|a| a.lines().map(str::to_string).collect())
                .unwrap_or_default(),
            options: read(dir.join("options").join("options")),
            listed,
            added,
            running: running(&dir).is_some(),
        }
    }

    /// What applying `change` leaves in a server's files.
    fn note(&self, change: &DhcpChange) {
        let mut known = self.known();
        let server = known.entry(change.namespace().to_string()).or_default();
        match change {
            DhcpChange::Prepare { .. } => server.prepared = true,
            DhcpChange::WriteOptions { content, .. } => server.options = Some(content.clone()),
            DhcpChange::AddHost { name, content, .. } => {
                server.added.insert(name.clone(), content.clone());
            }
            DhcpChange::ListHosts {
                content, folded, ..
            } => {
                server.listed = listed(content);
                for name in folded {
                    server.added.remove(name);
                }
            }
            DhcpChange::Start { args, .. } | DhcpChange::Restart { args, .. } => {
                server.args = args.clone();
                server.running = true;
            }
            DhcpChange::Reload { .. } | DhcpChange::Release { .. } => {}
            DhcpChange::Stop { namespace } => {
                known.remove(namespace);
            }
        }
    }

    /// Applies one change.
    fn apply_one(&self, change: &DhcpChange, report: &mut DhcpReport) -> io::Result<()> {
        match change {
            DhcpChange::Prepare { namespace } => {
                let dir = self.server_dir(namespace);
                fs::create_dir_all(dir.join("hosts"))?;
                fs::create_dir_all(dir.join("options"))
            }
            DhcpChange::WriteOptions { namespace, content } => write(
                &self.server_dir(namespace).join("options").join("options"),
                content,
            ),
            DhcpChange::AddHost {
                namespace,
                name,
                content,
            } => write(
                &self.server_dir(namespace).join("hosts").join(name),
                content,
            ),
            DhcpChange::ListHosts {
                namespace,
                content,
                folded,
            } => {
                let dir = self.server_dir(namespace);
                write(&dir.join("hostsfile"), content)?;
                for name in folded {
                    match fs::remove_file(dir.join("hosts").join(name)) {
                        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                        _ => {}
                    }
                }
                Ok(())
            }
            DhcpChange::Release {
                namespace,
                interface,
                ip,
                mac,
            } => {
                let output = netns::command(namespace, "dhcp_release")?
                    .args([interface, ip, mac])
                    .stdin(std::process::Stdio::null())
                    .output()
                    .map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!("is dhcp_release (dnsmasq-utils) installed? {e}"),
                        )
                    })?;
                if !output.status.success() {
                    let message = String::from_utf8_lossy(&output.stderr).trim().to_string();
                    return Err(io::Error::other(message));
                }
                report.released.push(format!("{ip} {mac} in {namespace}"));
                Ok(())
            }
            DhcpChange::Reload { namespace } => {
                let pid = running(&self.server_dir(namespace))
                    .ok_or_else(|| io::Error::other("it is not running"))?;
                kill(pid, Signal::SIGHUP).map_err(io::Error::from)?;
                report.reloaded.push(namespace.clone());
                Ok(())
            }
            DhcpChange::Start { namespace, args } => {
                self.start(namespace, args)?;
                report.started.push(namespace.clone());
                Ok(())
            }
            DhcpChange::Restart { namespace, args } => {
                if let Some(pid) = running(&self.server_dir(namespace)) {
                    stop(pid);
                }
                self.start(namespace, args)?;
                report.restarted.push(namespace.clone());
                Ok(())
            }
            DhcpChange::Stop { namespace } => {
                let dir = self.server_dir(namespace);
                if let Some(pid) = running(&dir) {
                    stop(pid);
                }
                fs::remove_dir_all(&dir)?;
                report.stopped.push(namespace.clone());
                Ok(())
            }
        }
    }

    fn start(&self, namespace: &str, args: &[String]) -> io::Result<()> {
        fs::write(self.server_dir(namespace).join("args"), args.join("\n"))?;
        let output = netns::command(namespace, &self.binary)?
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output()
            .map_err(|e| io::Error::new(e.kind(), format!("is dnsmasq installed? {e}")))?;
        if !output.status.success() {
            let message = String::from_utf8_lossy(&output.stderr).trim().to_string();
            return Err(io::Error::other(message));
        }
        Ok(())
    }
}

impl DhcpServers for Dnsmasq {
    fn server_dir(&self, namespace: &str) -> PathBuf {
        Dnsmasq::server_dir(self, namespace)
    }

    /// The servers' files are read once per drift interval; in between,
    /// what the agent wrote is what they hold, and only whether each server
    /// still runs is looked at.
    fn observe(&self) -> BTreeMap<String, ObservedServer> {
        let due = {
            let mut read_at = self.read_at.lock().unwrap_or_else(|p| p.into_inner());
            let due = read_at.is_none_or(|at| at.elapsed() >= self.drift_every);
            if due {
                *read_at = Some(Instant::now());
            }
            due
        };
        if !due {
            let mut known = self.known();
            for (namespace, server) in known.iter_mut() {
                server.running = running(&self.server_dir(namespace)).is_some();
            }
            return known.clone();
        }
        let found: BTreeMap<String, ObservedServer> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.path().is_dir())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .map(|namespace| {
                let observed = self.observe_one(&namespace);
                (namespace, observed)
            })
            .collect();
        *self.known() = found.clone();
        found
    }

    /// Every server's changes are tried; one that fails ends that server's
    /// changes (what follows depends on it), not the others'.
    fn apply(&self, changes: &[DhcpChange]) -> (DhcpReport, Vec<Failure>) {
        let mut report = DhcpReport::default();
        let mut errors: Vec<Failure> = Vec::new();
        let mut failed: BTreeSet<&str> = BTreeSet::new();
        for change in changes {
            let namespace = change.namespace();
            if failed.contains(namespace) {
                continue;
            }
            let result = self.apply_one(change, &mut report);
            if result.is_ok() {
                self.note(change);
            } else {
                // What a failed change left is not known: read it next time.
                *self.read_at.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
            if let Err(cause) = result {
                failed.insert(namespace);
                errors.push(Box::new(DhcpError {
                    namespace: namespace.to_string(),
                    what: change.what(),
                    cause,
                }));
            }
        }
        (report, errors)
    }
}
