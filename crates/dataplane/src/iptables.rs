//! Security groups and router NAT through iptables-restore and ipset, one
//! process per table and family.
//!
//! What was applied is remembered in the agent's state directory: the
//! digest of the desired ruleset, and fingerprints of neutrino's chains as
//! the kernel held them right after. A resync with nothing new reads the
//! tables (`iptables-save`, no write) and, if a chain or a jump of ours was
//! flushed, edited or removed behind the agent's back, restores exactly
//! that chain or jump (`core::xtables::repair`), or fills again exactly the
//! ipset that lost or gained members; a changed ruleset is applied in full.
//! A restarted agent finds its record and does the same.
//!
//! Every program is the chosen backend's own (`iptables-nft-restore`,
//! `iptables-legacy-save`, …), never the host's `iptables` alternative,
//! so neutrino's rules are in one backend only.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::netns;
use neutrino_core::firewall::{
    ipset_removal, ipset_restore, node_restore, node_ruleset, router_nat,
};
use neutrino_core::names::is_our_ipset;
use neutrino_core::plan::{RouterPlan, SecurityPlan};
use neutrino_core::xtables::{
    Backend, Choice, Fingerprints, detect, drifted, fingerprints, holds_ours, ipset_fingerprints,
    ours_in, removal, repair,
};

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

/// Runs `program args` in `namespace` (the current one when `None`) with
/// `input` on stdin; its stdout on success.
fn run(
    namespace: Option<&str>,
    program: &str,
    args: &[&str],
    input: &str,
) -> Result<String, FirewallError> {
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
    if !output.status.success() {
        return Err(error(
            format!("{program} {}", args.join(" ")),
            String::from_utf8_lossy(&output.stderr).trim(),
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn digest(parts: &[&str]) -> String {
    neutrino_core::digest::hex(parts, 32)
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

/// What was last applied to a namespace: the digest of the desired
/// ruleset, and the fingerprints of neutrino's part of each table (by
/// family) as the kernel held it right after, so a later resync can tell
/// what was changed behind its back. One line each, tab-separated.
#[derive(Debug, PartialEq)]
struct Record {
    desired: String,
    tables: Vec<Fingerprints>,
}

impl Record {
    fn render(&self) -> String {
        let mut out = format!("desired\t{}\n", self.desired);
        for (i, table) in self.tables.iter().enumerate() {
            out.push_str(&format!("table\t{i}\n"));
            for (key, fingerprint) in table {
                out.push_str(&format!("\t{key}\t{fingerprint}\n"));
            }
        }
        out
    }

    /// `None` for anything else, an older agent's record included: the
    /// next sync then applies in full.
    fn parse(text: &str) -> Option<Record> {
        let mut lines = text.lines();
        let desired = lines.next()?.strip_prefix("desired\t")?.to_string();
        let mut tables: Vec<Fingerprints> = Vec::new();
        for line in lines {
            if line.starts_with("table\t") {
                tables.push(Fingerprints::new());
            } else {
                let (key, fingerprint) = line.strip_prefix('\t')?.rsplit_once('\t')?;
                tables
                    .last_mut()?
                    .insert(key.to_string(), fingerprint.to_string());
            }
        }
        Some(Record { desired, tables })
    }
}

/// The firewall of one node (its own namespace and its routers').
pub struct Firewall {
    dir: PathBuf,
    backend: Backend,
    /// How often an unchanged ruleset is read back to catch drift.
    drift_every: Duration,
    /// When each namespace's tables were last read back.
    checked: Mutex<BTreeMap<String, Instant>>,
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

    fn applied(&self, name: &str) -> Option<Record> {
        Record::parse(&std::fs::read_to_string(self.record(name)).ok()?)
    }

    fn remember(&self, name: &str, record: &Record) -> Result<(), FirewallError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| error("recording the firewall", e))?;
        std::fs::write(self.record(name), record.render())
            .map_err(|e| error("recording the firewall", e))
    }

    fn forget(&self, name: &str) {
        let _ = std::fs::remove_file(self.record(name));
    }

    /// Applies the node's security groups in `namespace`; the number of
    /// processes run (kernel writes), zero when nothing changed.
    pub fn sync_node(
        &self,
        namespace: Option<&str>,
        plan: &SecurityPlan,
        bridges: &[String],
    ) -> Result<usize, FirewallError> {
        let key = "node";
        let v4 = node_ruleset(plan, bridges, false, &[], false);
        let v6 = node_ruleset(plan, bridges, true, &[], false);
        let sets = ipset_restore(&plan.ipsets);
        let hash = digest(&[&v4, &v6, &sets]);
        let previous = self.applied(key);
        // Rules follow the bridges as well as the ports (a conntrack zone
        // and a forward rule each): only a node with neither has nothing.
        let empty = plan.ports.is_empty() && bridges.is_empty();
        match previous {
            None if empty => return Ok(0),
            // Nothing new to apply: put back what was changed behind our back.
            Some(record) if record.desired == hash => {
                if !self.drift_check_due(key) {
                    return Ok(0);
                }
                return self.repair_node(namespace, plan, bridges, record);
            }
            _ => {}
        }
        let mut writes = 0;
        if !plan.ports.is_empty() {
            for key in [
                "net.bridge.bridge-nf-call-iptables",
                "net.bridge.bridge-nf-call-ip6tables",
            ] {
                if netns::read_sysctl(namespace, key).is_ok_and(|v| v != "1") {
                    netns::sysctl(namespace, key, "1")
                        .map_err(|e| error(format!("setting {key}"), e))?;
                    writes += 1;
                }
            }
        }
        if !sets.is_empty() {
            run(namespace, "ipset", &["restore"], &sets)?;
            writes += 1;
        }
        for v6 in [false, true] {
            let (save, restore) = (
                self.backend.program(v6, "save"),
                self.backend.program(v6, "restore"),
            );
            let current = run(namespace, &save, &[], "")?;
            let text = node_restore(plan, bridges, v6, &current);
            run(namespace, &restore, &["--noflush"], &text)?;
            writes += 1;
        }
        let stale_sets = ipset_removal(plan, &run(namespace, "ipset", &["list", "-n"], "")?);
        if !stale_sets.is_empty() {
            run(namespace, "ipset", &["restore"], &stale_sets)?;
            writes += 1;
        }
        if empty {
            self.forget(key);
        } else {
            // Read back just now: the next drift check is an interval away.
            let tables = self.observe_node(namespace)?;
            self.checked_now(key);
            self.remember(
                key,
                &Record {
                    desired: hash,
                    tables,
                },
            )?;
        }
        Ok(writes)
    }

    /// The fingerprints of neutrino's chains in each family and of its
    /// ipsets' members, as the kernel holds them.
    fn observe_node(&self, namespace: Option<&str>) -> Result<Vec<Fingerprints>, FirewallError> {
        let mut tables = Vec::new();
        for v6 in [false, true] {
            let saved = run(namespace, &self.backend.program(v6, "save"), &[], "")?;
            tables.push(fingerprints(&ours_in(&saved)));
        }
        tables.push(ipset_fingerprints(&run(namespace, "ipset", &["save"], "")?));
        Ok(tables)
    }

    /// Compares neutrino's chains with what was recorded after the last
    /// apply, and restores exactly the chains (and jumps) that differ.
    fn repair_node(
        &self,
        namespace: Option<&str>,
        plan: &SecurityPlan,
        bridges: &[String],
        mut record: Record,
    ) -> Result<usize, FirewallError> {
        let mut writes = 0;
        let mut changed = false;
        for (i, v6) in [false, true].into_iter().enumerate() {
            let save = self.backend.program(v6, "save");
            let current = ours_in(&run(namespace, &save, &[], "")?);
            let now = fingerprints(&current);
            let applied = record.tables.get(i).cloned().unwrap_or_default();
            let drift = drifted(&applied, &now);
            if drift.is_empty() {
                continue;
            }
            let text = repair(
                &node_ruleset(plan, bridges, v6, &[], true),
                &current,
                &drift,
            );
            if !text.is_empty() {
                tracing::warn!(
                    ?drift,
                    "neutrino's rules were changed on the node; putting them back"
                );
                run(
                    namespace,
                    &self.backend.program(v6, "restore"),
                    &["--noflush"],
                    &text,
                )?;
                writes += 1;
            }
            // What we do not want (a chain of ours someone added) is accepted
            // as it is, so that it is not reported on every resync.
            let now = fingerprints(&ours_in(&run(namespace, &save, &[], "")?));
            if record.tables.len() <= i {
                record.tables.resize(i + 1, Fingerprints::new());
            }
            record.tables[i] = now;
            changed = true;
        }
        // A set that lost or gained members is filled again, through its
        // temporary twin and a swap, as when it was made.
        let now = ipset_fingerprints(&run(namespace, "ipset", &["save"], "")?);
        let applied = record.tables.get(2).cloned().unwrap_or_default();
        let drift = drifted(&applied, &now);
        if !drift.is_empty() {
            let sets: Vec<_> = plan
                .ipsets
                .iter()
                .filter(|set| drift.contains(&format!("set {}", set.name)))
                .cloned()
                .collect();
            if !sets.is_empty() {
                tracing::warn!(
                    ?drift,
                    "neutrino's ipsets were changed on the node; filling them again"
                );
                run(namespace, "ipset", &["restore"], &ipset_restore(&sets))?;
                writes += 1;
            }
            record.tables.resize(3, Fingerprints::new());
            record.tables[2] = ipset_fingerprints(&run(namespace, "ipset", &["save"], "")?);
            changed = true;
        }
        if changed {
            self.remember("node", &record)?;
        }
        Ok(writes)
    }

    /// Replaces the NAT table of a router's namespace when it changed, or
    /// when it no longer holds what was applied (the namespace is all
    /// neutrino's, so the whole table is the router's).
    pub fn sync_router(&self, router: &RouterPlan) -> Result<usize, FirewallError> {
        let text = router_nat(router);
        let hash = digest(&[&text]);
        let namespace = Some(router.namespace.as_str());
        let save = self.backend.program(false, "save");
        let observe = || -> Result<Fingerprints, FirewallError> {
            let saved = run(namespace, &save, &["-t", "nat"], "")?;
            let rules: Vec<&str> = saved.lines().filter(|l| l.starts_with("-A ")).collect();
            Ok(Fingerprints::from([(
                "nat".to_string(),
                neutrino_core::digest::hex(&rules, 8),
            )]))
        };
        if let Some(record) = self.applied(&router.namespace)
            && record.desired == hash
            && (!self.drift_check_due(&router.namespace)
                || record.tables.first() == Some(&observe()?))
        {
            return Ok(0);
        }
        run(
            namespace,
            &self.backend.program(false, "restore"),
            &[],
            &text,
        )?;
        self.remember(
            &router.namespace,
            &Record {
                desired: hash,
                tables: vec![observe()?],
            },
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
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}
