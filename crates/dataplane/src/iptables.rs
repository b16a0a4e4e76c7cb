//! Security groups and router NAT through iptables-restore and ipset, one
//! process per table and family.
//!
//! What was applied is remembered, in memory and in the agent's state
//! directory: a print of each chain, jump and set as wanted and as the
//! kernel last held it (`core::ruleset`). A change writes only the chains
//! and sets that differ, without reading any table; once per drift interval
//! the tables are read (`iptables-save`, `ipset save`) and a chain or jump
//! of ours that was flushed, edited or removed behind the agent's back, or
//! a set that lost or gained members, is written again — exactly that. A
//! restarted agent finds its record and does the same.
//!
//! Every program is the chosen backend's own (`iptables-nft-restore`,
//! `iptables-legacy-save`, …), never the host's `iptables` alternative,
//! so neutrino's rules are in one backend only.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::netns;
use neutrino_core::firewall::{BridgePorts, RuleCache, ipset_restore, router_nat};
use neutrino_core::names::is_our_ipset;
use neutrino_core::plan::{RouterPlan, SecurityPlan};
use neutrino_core::ruleset::{
    self, Applied, Entry, Kernel, NeedsKernel, Print, rules_print, sets_in,
};
use neutrino_core::xtables::{Backend, Choice, detect, holds_ours, ours_in, removal};

/// A ruleset that could not be applied.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct FirewallError {
    pub what: String,
    pub message: String,
}

fn error(what: impl Into<String>, message: impl ToString) -> FirewallError {
    FirewallError {
        what: what.into(),
        message: message.to_string(),
    }
}

/// The nftables table `family` `table` as `nft list` prints it in
/// `namespace`; empty when there is none.
pub(crate) fn nft_listing(namespace: Option<&str>, family: &str, table: &str) -> String {
    run(namespace, "nft", &["list", "table", family, table], "").unwrap_or_default()
}

/// Runs `program args` in `namespace` (the current one when `None`) with
/// `input` on stdin; its stdout on success.
pub(crate) fn run(
    namespace: Option<&str>,
    program: &str,
    args: &[&str],
    input: &str,
) -> Result<String, FirewallError> {
    let started = std::time::Instant::now();
    let mut command = match namespace {
        Some(ns) => netns::command(ns, program).map_err(|e| error(format!("entering {ns}"), e))?,
        None => Command::new(program),
    };
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| error(format!("running {program} (is it installed?)"), e))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .map_err(|e| error(format!("feeding {program}"), e))?;
    let output = child
        .wait_with_output()
        .map_err(|e| error(format!("running {program}"), e))?;
    tracing::trace!(
        program,
        ?args,
        ms = started.elapsed().as_secs_f64() * 1e3,
        "ran"
    );
    if !output.status.success() {
        return Err(error(
            format!("{program} {}", args.join(" ")),
            String::from_utf8_lossy(&output.stderr).trim(),
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Both families' `iptables-save` output of `backend` in `namespace`;
/// empty where the backend is missing from the host or the kernel.
fn saved(namespace: Option<&str>, backend: Backend) -> String {
    [false, true]
        .iter()
        .filter_map(|v6| run(namespace, &backend.program(*v6, "save"), &[], "").ok())
        .collect()
}

/// The backend `choice` means in `namespace`, and why.
pub fn backend(namespace: Option<&str>, choice: Choice) -> (Backend, String) {
    match choice {
        Choice::Fixed(backend) => (backend, "as configured".into()),
        Choice::Auto => detect(
            &saved(namespace, Backend::Nft),
            &saved(namespace, Backend::Legacy),
        ),
    }
}

/// Takes neutrino's chains, and the jumps into them, out of `backend` in
/// `namespace`; the number of processes run.
pub fn remove_chains(namespace: Option<&str>, backend: Backend) -> Result<usize, FirewallError> {
    let mut writes = 0;
    for v6 in [false, true] {
        let Ok(current) = run(namespace, &backend.program(v6, "save"), &[], "") else {
            continue;
        };
        let text = removal(&current);
        if !text.is_empty() {
            run(
                namespace,
                &backend.program(v6, "restore"),
                &["--noflush"],
                &text,
            )?;
            writes += 1;
        }
    }
    Ok(writes)
}

/// Destroys neutrino's ipsets in `namespace`; the number of processes run.
pub fn remove_ipsets(namespace: Option<&str>) -> Result<usize, FirewallError> {
    let sets_now = run(namespace, "ipset", &["list", "-n"], "")?;
    let input: String = sets_now
        .lines()
        .filter(|s| is_our_ipset(s))
        .map(|s| format!("destroy {s}\n"))
        .collect();
    if input.is_empty() {
        return Ok(0);
    }
    run(namespace, "ipset", &["restore"], &input)?;
    Ok(1)
}

/// Makes bridged traffic pass iptables, which the port chains need; the
/// number of sysctls set. Checked where the tables are read: a first sync
/// and each drift check.
fn bridge_netfilter(namespace: Option<&str>) -> Result<usize, FirewallError> {
    let mut writes = 0;
    for key in [
        "net.bridge.bridge-nf-call-iptables",
        "net.bridge.bridge-nf-call-ip6tables",
    ] {
        if netns::read_sysctl(namespace, key).is_ok_and(|v| v != "1") {
            netns::sysctl(namespace, key, "1").map_err(|e| error(format!("setting {key}"), e))?;
            writes += 1;
        }
    }
    Ok(writes)
}

/// The firewall of one node (its own namespace and its routers').
pub struct Firewall {
    dir: PathBuf,
    backend: Backend,
    /// How often an unchanged ruleset is read back to catch drift.
    drift_every: Duration,
    /// When each namespace's tables were last read back.
    checked: Mutex<BTreeMap<String, Instant>>,
    /// What was applied, by namespace: the record files' content, read
    /// once.
    applied: Mutex<BTreeMap<String, Applied>>,
    /// The node's rules as last built.
    rules: Mutex<RuleCache>,
    /// Whether bridged traffic is known to pass iptables since the last
    /// look at the sysctls that make it.
    bridged: AtomicBool,
}

impl Firewall {
    /// A firewall writing through `backend`, keeping what it applied in
    /// `dir`, reading its tables back for drift on every sync.
    pub fn new(dir: impl Into<PathBuf>, backend: Backend) -> Self {
        Self {
            dir: dir.into(),
            backend,
            drift_every: Duration::ZERO,
            checked: Mutex::new(BTreeMap::new()),
            applied: Mutex::new(BTreeMap::new()),
            rules: Mutex::new(RuleCache::default()),
            bridged: AtomicBool::new(false),
        }
    }

    /// Reads an unchanged ruleset back at most once per `every`: a sync
    /// woken by an unrelated change then runs no process at all, and drift
    /// is still put back within `every` (the agent's resync interval).
    pub fn checking_drift_every(mut self, every: Duration) -> Self {
        self.drift_every = every;
        self
    }

    /// Whether `name`'s tables are due to be read back, noting that they are.
    fn drift_check_due(&self, name: &str) -> bool {
        let due = self
            .checked
            .lock()
            .expect("the drift checks' lock")
            .get(name)
            .is_none_or(|last| last.elapsed() >= self.drift_every);
        if due {
            self.checked_now(name);
        }
        due
    }

    /// Notes that `name`'s tables were read back just now.
    fn checked_now(&self, name: &str) {
        self.checked
            .lock()
            .expect("the drift checks' lock")
            .insert(name.to_string(), Instant::now());
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Makes sure none of neutrino's chains is left in the backend this
    /// firewall does not use (an earlier run's choice, or the host's
    /// changed): rules in both would be two firewalls for one packet.
    pub fn evict_other_backend(&self, namespace: Option<&str>) -> Result<usize, FirewallError> {
        let other = self.backend.other();
        if !holds_ours(&saved(namespace, other)) {
            return Ok(0);
        }
        tracing::warn!(backend = %other, "removing neutrino's chains from the iptables backend not in use");
        // What was applied through the other backend is not applied here.
        self.forget("node");
        remove_chains(namespace, other)
    }

    fn record(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.applied"))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Applied>> {
        self.applied.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What was applied to `name`, taken out of memory, or else read from
    /// the record an earlier agent left (then `true`: a record from disk may
    /// be older than the tables, so it is checked against them).
    fn take_applied(&self, name: &str) -> (Option<Applied>, bool) {
        if let Some(applied) = self.cache().remove(name) {
            return (Some(applied), false);
        }
        let from_disk = std::fs::read_to_string(self.record(name))
            .ok()
            .and_then(|text| Applied::parse(&text));
        (from_disk, true)
    }

    /// Keeps what was applied to `name` in memory, and, when `persist`, in
    /// its record for an agent started again.
    fn remember(&self, name: &str, applied: Applied, persist: bool) -> Result<(), FirewallError> {
        if persist {
            std::fs::create_dir_all(&self.dir).map_err(|e| error("recording the firewall", e))?;
            super::files::write_atomic(&self.record(name), applied.render().as_bytes())
                .map_err(|e| error("recording the firewall", e))?;
        }
        self.cache().insert(name.to_string(), applied);
        Ok(())
    }

    fn forget(&self, name: &str) {
        self.cache().remove(name);
        let _ = std::fs::remove_file(self.record(name));
    }

    /// What the kernel holds of neutrino's in `namespace`: both families'
    /// tables and the sets.
    fn read_kernel(&self, namespace: Option<&str>) -> Result<Kernel, FirewallError> {
        let mut kernel = Kernel::default();
        for (family, v6) in [false, true].into_iter().enumerate() {
            let saved = run(namespace, &self.backend.program(v6, "save"), &[], "")?;
            kernel.tables[family] = ours_in(&saved);
        }
        kernel.sets = sets_in(&run(namespace, "ipset", &["save"], "")?);
        Ok(kernel)
    }

    /// Applies the node's security groups in `namespace`; the number of
    /// processes run (kernel writes), zero when nothing changed.
    ///
    /// A change is planned from the record of what was applied: only the
    /// chains and sets whose wanted content changed are written, and no
    /// table is read. Once per drift interval, or when the record does not
    /// say enough (a first sync, the jumps from the host's chains), the
    /// tables are read and whatever differs from the record is written too.
    pub fn sync_node(
        &self,
        namespace: Option<&str>,
        plan: &SecurityPlan,
        bridges: &[BridgePorts],
    ) -> Result<usize, FirewallError> {
        let key = "node";
        let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        let wanted = rules.node(plan, bridges);
        let (applied, from_disk) = self.take_applied(key);
        let mut read = applied.is_none() || from_disk || self.drift_check_due(key);
        let applied = applied.unwrap_or_default();
        let kernel = if read {
            Some(self.read_kernel(namespace)?)
        } else {
            None
        };
        let sync = match ruleset::plan(wanted, &plan.ipsets, &applied, kernel.as_ref()) {
            Ok(sync) => sync,
            Err(NeedsKernel) => {
                read = true;
                let kernel = self.read_kernel(namespace)?;
                ruleset::plan(wanted, &plan.ipsets, &applied, Some(&kernel))
                    .expect("a plan with the kernel read needs nothing more")
            }
        };
        if read {
            self.checked_now(key);
        }
        // Port chains need bridged traffic to pass iptables: looked at when
        // the first ports come, and again at every read of the tables.
        let mut writes = 0;
        if !plan.ports.is_empty() && (read || !self.bridged.load(Ordering::Relaxed)) {
            writes += bridge_netfilter(namespace)?;
            self.bridged.store(true, Ordering::Relaxed);
        }
        if sync.is_empty() {
            self.remember(key, sync.record, read)?;
            return Ok(writes);
        }
        writes += self.write_node(namespace, &sync)?;
        // Where the tables were read anyway, read what was written back, so
        // the record holds the kernel's own text of it.
        let record = if read {
            let after = self.read_kernel(namespace)?;
            ruleset::plan(wanted, &plan.ipsets, &sync.record, Some(&after))
                .map(|s| s.record)
                .unwrap_or(sync.record)
        } else {
            sync.record
        };
        if record.0.is_empty() {
            self.forget(key);
        } else {
            // The record on disk follows at the next read of the tables: a
            // restarted agent checks it against them first.
            self.remember(key, record, read)?;
        }
        Ok(writes)
    }

    /// Writes one sync in order: sets filled before the rules that use them,
    /// each family's restore, sets destroyed after the rules that used them.
    fn write_node(
        &self,
        namespace: Option<&str>,
        sync: &ruleset::Sync,
    ) -> Result<usize, FirewallError> {
        let mut writes = 0;
        if !sync.fill.is_empty() {
            run(namespace, "ipset", &["restore"], &ipset_restore(&sync.fill))?;
            writes += 1;
        }
        for (text, v6) in sync.restore.iter().zip([false, true]) {
            if !text.is_empty() {
                run(
                    namespace,
                    &self.backend.program(v6, "restore"),
                    &["--noflush"],
                    text,
                )?;
                writes += 1;
            }
        }
        if !sync.destroy.is_empty() {
            let text: String = sync
                .destroy
                .iter()
                .map(|s| format!("destroy {s}\n"))
                .collect();
            run(namespace, "ipset", &["restore"], &text)?;
            writes += 1;
        }
        Ok(writes)
    }

    /// Replaces the NAT table of a router's namespace when it changed, or,
    /// at a drift check, when it no longer holds what was applied (the
    /// namespace is all neutrino's, so the whole table is the router's).
    pub fn sync_router(&self, router: &RouterPlan) -> Result<usize, FirewallError> {
        let text = router_nat(router);
        let lines: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("-A "))
            .map(str::to_string)
            .collect();
        let wanted = rules_print(&lines);
        let namespace = Some(router.namespace.as_str());
        let save = self.backend.program(false, "save");
        let observe = || -> Result<Option<Print>, FirewallError> {
            let saved = run(namespace, &save, &["-t", "nat"], "")?;
            let rules: Vec<String> = saved
                .lines()
                .filter(|l| l.starts_with("-A "))
                .map(str::to_string)
                .collect();
            Ok(Some(rules_print(&rules)))
        };
        let (applied, from_disk) = self.take_applied(&router.namespace);
        let entry = applied.as_ref().and_then(|a| a.0.get("nat"));
        let now = if entry.is_none() || from_disk || self.drift_check_due(&router.namespace) {
            Some(observe()?)
        } else {
            None
        };
        let read = now.is_some();
        let (must, kernel) = ruleset::decide(&wanted, entry, now);
        if !must {
            let record = Entry { wanted, kernel };
            self.remember(
                &router.namespace,
                Applied([("nat".into(), record)].into()),
                read,
            )?;
            return Ok(0);
        }
        run(
            namespace,
            &self.backend.program(false, "restore"),
            &[],
            &text,
        )?;
        let record = Entry {
            wanted,
            kernel: observe()?,
        };
        self.remember(
            &router.namespace,
            Applied([("nat".into(), record)].into()),
            true,
        )?;
        self.checked_now(&router.namespace);
        Ok(1)
    }

    /// Forgets routers that are gone (their namespace took their rules).
    pub fn forget_routers_except(&self, keep: &[&str]) {
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(namespace) = name.strip_suffix(".applied")
                && namespace != "node"
                && !keep.contains(&namespace)
            {
                self.forget(namespace);
            }
        }
    }
}
