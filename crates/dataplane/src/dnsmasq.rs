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
use std::time::Duration;

use super::backend::{DhcpServers, Failure};
use super::netns;
use neutrino_core::dnsmasq::{DhcpChange, ObservedServer, diff, server};
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
}

/// Writes `content` to `path`. A rename makes the change atomic for
/// dnsmasq's watch.
fn write(path: &Path, content: &str) -> io::Result<()> {
    let temporary = path.with_extension("tmp");
    fs::write(&temporary, content)?;
    fs::rename(&temporary, path)
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
        let mut hosts = BTreeMap::new();
        for entry in fs::read_dir(dir.join("hosts"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            // A temporary file of an interrupted write is a host file to drop.
            hosts.insert(name, read(entry.path()).unwrap_or_default());
        }
        ObservedServer {
            prepared: dir.join("hosts").is_dir() && dir.join("options").is_dir(),
            args: read(dir.join("args"))
                .map(|a| a.lines().map(str::to_string).collect())
                .unwrap_or_default(),
            options: read(dir.join("options").join("options")),
            hosts,
            running: running(&dir).is_some(),
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
            DhcpChange::WriteHost {
                namespace,
                name,
                content,
            } => write(
                &self.server_dir(namespace).join("hosts").join(name),
                content,
            ),
            DhcpChange::RemoveHost { namespace, name } => {
                fs::remove_file(self.server_dir(namespace).join("hosts").join(name))
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

    fn observe(&self) -> BTreeMap<String, ObservedServer> {
        fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.path().is_dir())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .map(|namespace| {
                let observed = self.observe_one(&namespace);
                (namespace, observed)
            })
            .collect()
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
            if let Err(cause) = self.apply_one(change, &mut report) {
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
