//! neutrino's iptables rules and ipsets on a node as values: what the plan
//! wants ([`Ruleset`] per family, [`IpSetPlan`]s), what was applied and
//! what the kernel held of it ([`Applied`]), and the smallest
//! `iptables-restore --noflush` and `ipset restore` input between them
//! ([`plan`]).
//!
//! A change is planned from the record alone, so the hot path reads no
//! table: only the chains and sets whose wanted content changed are
//! written, each declared (which empties it) and filled again. A drift
//! check adds what the kernel holds (`iptables-save`, `ipset save`) and
//! also writes what differs from what was recorded there. A chain or set
//! written since the last check has no kernel record yet; the check takes
//! the kernel's version as it is when its shape — the number of rules and
//! their targets, or of members — is the wanted one, and writes it again
//! otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::Arc;

use super::names::{is_our_chain, is_our_ipset};
use super::plan::IpSetPlan;
use super::xtables::Ours;
use neutrino_api::EtherType;

/// One chain's rules (or a host chain's jumps into ours) as `-A CHAIN …`
/// lines, with their print; shared, as a sync keeps most of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub lines: Arc<[String]>,
    pub print: Print,
}

impl Chain {
    pub fn new(lines: Vec<String>) -> Self {
        let print = rules_print(&lines);
        Self {
            lines: lines.into(),
            print,
        }
    }
}

/// One family's rules of neutrino: each chain of its own and each host
/// chain it jumps from, keyed `TABLE CHAIN` as [`Ours`] is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub chains: BTreeMap<String, Chain>,
    /// In host chains: only neutrino's jumps, which are inserted first.
    pub jumps: BTreeMap<String, Chain>,
}

impl Ruleset {
    pub fn is_empty(&self) -> bool {
        self.chains.is_empty() && self.jumps.is_empty()
    }

    /// Every rule, for counting.
    pub fn rules(&self) -> usize {
        self.chains
            .values()
            .chain(self.jumps.values())
            .map(|c| c.lines.len())
            .sum()
    }
}

/// A short print of an entry's content: its shape (how many rules and
/// their targets, or how many members) and a digest of all of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Print {
    pub shape: u64,
    pub digest: u64,
}

impl Print {
    fn render(&self) -> String {
        format!("{:016x}:{:016x}", self.shape, self.digest)
    }

    fn parse(text: &str) -> Option<Self> {
        let (shape, digest) = text.split_once(':')?;
        Some(Self {
            shape: u64::from_str_radix(shape, 16).ok()?,
            digest: u64::from_str_radix(digest, 16).ok()?,
        })
    }
}

fn target(rule: &str) -> &str {
    rule.split_whitespace()
        .skip_while(|w| *w != "-j" && *w != "-g")
        .nth(1)
        .unwrap_or("")
}

/// The print of a chain's rules (or of a host chain's jumps into ours).
pub fn rules_print<S: AsRef<str>>(lines: &[S]) -> Print {
    let count = lines.len().to_string();
    let shape: Vec<&str> = std::iter::once(count.as_str())
        .chain(lines.iter().map(|l| target(l.as_ref())))
        .collect();
    Print {
        shape: crate::digest::value(&shape),
        digest: crate::digest::value(lines),
    }
}

/// The print of a set's members, in any order.
pub fn members_print<T: AsRef<str>>(family: &str, members: &[T]) -> Print {
    let mut sorted: Vec<&str> = members.iter().map(AsRef::as_ref).collect();
    sorted.sort_unstable();
    sorted.push(family);
    Print {
        shape: members.len() as u64,
        digest: crate::digest::value(&sorted),
    }
}

/// What was applied of one entry: the print of what was wanted, and of
/// what the kernel held of it at the last look (none since it was written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub wanted: Print,
    pub kernel: Option<Print>,
}

/// What was applied, keyed `4 TABLE CHAIN`, `6 TABLE CHAIN` or `set NAME`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied(pub BTreeMap<String, Entry>);

impl Applied {
    /// One line an entry, tab-separated; `-` where the kernel's is unknown.
    pub fn render(&self) -> String {
        let mut out = String::from("neutrino firewall record 2\n");
        for (key, entry) in &self.0 {
            let kernel = entry.kernel.as_ref().map_or("-".into(), Print::render);
            let _ = writeln!(out, "{key}\t{}\t{kernel}", entry.wanted.render());
        }
        out
    }

    /// `None` for anything else, an older agent's record included: the
    /// next sync then reads the tables and writes what differs.
    pub fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        if lines.next()? != "neutrino firewall record 2" {
            return None;
        }
        let mut entries = BTreeMap::new();
        for line in lines {
            let mut fields = line.split('\t');
            let (key, wanted, kernel) = (fields.next()?, fields.next()?, fields.next()?);
            let kernel = match kernel {
                "-" => None,
                print => Some(Print::parse(print)?),
            };
            entries.insert(
                key.to_string(),
                Entry {
                    wanted: Print::parse(wanted)?,
                    kernel,
                },
            );
        }
        Some(Self(entries))
    }
}

/// What the kernel holds of neutrino's: each family's chains and jumps, and
/// each set's members as `ipset save` lists them.
#[derive(Clone, Debug, Default)]
pub struct Kernel {
    pub tables: [Ours; 2],
    pub sets: BTreeMap<String, Vec<String>>,
}

/// The members of each of neutrino's sets in `ipset save` output.
pub fn sets_in(saved: &str) -> BTreeMap<String, Vec<String>> {
    let mut sets: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in saved.lines() {
        let mut words = line.split_whitespace();
        let (verb, set) = (words.next(), words.next());
        let Some(set) = set.filter(|s| is_our_ipset(s)) else {
            continue;
        };
        let members = sets.entry(set.to_string()).or_default();
        if verb == Some("add")
            && let Some(member) = words.next()
        {
            members.push(member.to_string());
        }
    }
    sets
}

/// A plan that cannot be made from the record alone: the jumps from the
/// host's chains must change, and which of them the kernel holds is not
/// known without reading the tables.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the jumps into neutrino's chains change; the tables must be read")]
pub struct NeedsKernel;

/// What one sync writes, in order: sets filled (before the rules that use
/// them), each family's restore, sets destroyed (after); and the record
/// that holds once they are written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sync {
    pub fill: Vec<IpSetPlan>,
    pub restore: [String; 2],
    pub destroy: Vec<String>,
    pub record: Applied,
}

impl Sync {
    pub fn is_empty(&self) -> bool {
        self.fill.is_empty() && self.restore.iter().all(String::is_empty) && self.destroy.is_empty()
    }
}

/// Whether an entry must be written: its wanted content changed since it
/// was applied, or the kernel (when read) holds something else. The
/// kernel's print to record when it need not be.
pub fn decide(
    wanted: &Print,
    applied: Option<&Entry>,
    kernel: Option<Option<Print>>,
) -> (bool, Option<Print>) {
    let Some(applied) = applied.filter(|a| &a.wanted == wanted) else {
        return (true, None);
    };
    match (kernel, &applied.kernel) {
        (None, recorded) => (false, *recorded),
        (Some(now), Some(recorded)) => match now {
            Some(now) if &now == recorded => (false, Some(now)),
            _ => (true, None),
        },
        (Some(now), None) => match now {
            Some(now) if now.shape == wanted.shape => (false, Some(now)),
            _ => (true, None),
        },
    }
}

/// The writes that take the kernel from what was `applied` (and, when read,
/// what `kernel` holds) to the `wanted` rulesets (IPv4, IPv6) and sets.
pub fn plan(
    wanted: &[Ruleset; 2],
    sets: &[IpSetPlan],
    applied: &Applied,
    kernel: Option<&Kernel>,
) -> Result<Sync, NeedsKernel> {
    let mut sync = Sync::default();
    for (family, (ruleset, tag)) in wanted.iter().zip(["4", "6"]).enumerate() {
        let found = kernel.map(|k| &k.tables[family]);
        let recorded: BTreeSet<&str> = applied
            .0
            .keys()
            .filter_map(|k| k.strip_prefix(tag)?.strip_prefix(' '))
            .collect();
        let mut write = BTreeSet::new();
        let mut drop = BTreeSet::new();
        let mut rehook = BTreeMap::new();
        let keys: BTreeSet<&str> = ruleset
            .chains
            .keys()
            .chain(ruleset.jumps.keys())
            .map(String::as_str)
            .chain(recorded.iter().copied())
            .chain(found.into_iter().flat_map(|f| f.keys().map(String::as_str)))
            .collect();
        for key in keys {
            let record_key = format!("{tag} {key}");
            let now = found.map(|f| f.get(key).map(|lines| rules_print(lines)));
            let jump = ruleset.jumps.contains_key(key) || !is_our_chain(chain_of(key));
            let chain = ruleset.chains.get(key).or_else(|| ruleset.jumps.get(key));
            match chain {
                Some(chain) => {
                    let print = chain.print;
                    let (must, kernel) = decide(&print, applied.0.get(&record_key), now);
                    if must {
                        if jump {
                            let Some(found) = found else {
                                return Err(NeedsKernel);
                            };
                            rehook.insert(key, found.get(key).cloned().unwrap_or_default());
                        } else {
                            write.insert(key);
                        }
                    }
                    sync.record.0.insert(
                        record_key,
                        Entry {
                            wanted: print,
                            kernel,
                        },
                    );
                }
                None if jump => {
                    let Some(found) = found else {
                        return Err(NeedsKernel);
                    };
                    if let Some(lines) = found.get(key) {
                        rehook.insert(key, lines.clone());
                    }
                }
                None => {
                    drop.insert(key);
                }
            }
        }
        sync.restore[family] = restore(ruleset, &write, &drop, &rehook);
    }
    plan_sets(sets, applied, kernel, &mut sync);
    Ok(sync)
}

fn plan_sets(sets: &[IpSetPlan], applied: &Applied, kernel: Option<&Kernel>, sync: &mut Sync) {
    for set in sets {
        let key = format!("set {}", set.name);
        let members: Vec<String> = set.members.iter().map(ToString::to_string).collect();
        let print = members_print(family(set), &members);
        let now = kernel.map(|k| {
            k.sets
                .get(&set.name)
                .map(|found| members_print(family(set), found))
        });
        // The kernel lists members its own way (no /32): only the shape of
        // what it holds is comparable with what is wanted.
        let (must, kernel) = decide(&print, applied.0.get(&key), now);
        if must {
            sync.fill.push(set.clone());
        }
        sync.record.0.insert(
            key,
            Entry {
                wanted: print,
                kernel,
            },
        );
    }
    let wanted: BTreeSet<&str> = sets.iter().map(|s| s.name.as_str()).collect();
    let stale = applied
        .0
        .keys()
        .filter_map(|k| k.strip_prefix("set "))
        .chain(
            kernel
                .into_iter()
                .flat_map(|k| k.sets.keys().map(String::as_str)),
        )
        .filter(|name| !wanted.contains(name))
        .collect::<BTreeSet<_>>();
    sync.destroy = stale.into_iter().map(str::to_string).collect();
}

fn family(set: &IpSetPlan) -> &'static str {
    if set.ethertype == EtherType::IPv6 {
        "inet6"
    } else {
        "inet"
    }
}

fn chain_of(key: &str) -> &str {
    key.split_once(' ').map_or(key, |(_, chain)| chain)
}

/// `iptables-restore --noflush` input for one family: the chains in `write`
/// declared (which empties them) and filled, the chains in `drop` emptied
/// and deleted, and in each host chain of `rehook` the jumps found there
/// deleted and the wanted ones inserted first. Empty when there is nothing.
pub fn restore(
    ruleset: &Ruleset,
    write: &BTreeSet<&str>,
    drop: &BTreeSet<&str>,
    rehook: &BTreeMap<&str, Vec<String>>,
) -> String {
    let mut out = String::new();
    let tables: BTreeSet<&str> = write
        .iter()
        .chain(drop)
        .chain(rehook.keys())
        .filter_map(|k| k.split_once(' ').map(|(table, _)| table))
        .collect();
    // raw before filter, as iptables-save orders them.
    for table in tables.into_iter().rev() {
        let in_table = |key: &&&str| key.starts_with(&format!("{table} "));
        let _ = writeln!(out, "*{table}");
        for key in write.iter().chain(drop).filter(in_table) {
            let _ = writeln!(out, ":{} - [0:0]", chain_of(key));
        }
        for found in rehook.iter().filter(|(k, _)| in_table(k)).map(|(_, f)| f) {
            for line in found {
                let _ = writeln!(out, "-D {}", &line["-A ".len()..]);
            }
        }
        for key in write.iter().filter(in_table) {
            for line in ruleset.chains[*key].lines.iter() {
                out.push_str(line);
                out.push('\n');
            }
        }
        for (key, _) in rehook.iter().filter(|(k, _)| in_table(k)) {
            for line in ruleset
                .jumps
                .get(*key)
                .into_iter()
                .flat_map(|c| c.lines.iter())
                .rev()
            {
                let rest = &line["-A ".len()..];
                let (chain, spec) = rest.split_once(' ').unwrap_or((rest, ""));
                let _ = writeln!(out, "-I {chain} 1 {spec}");
            }
        }
        for key in drop.iter().filter(in_table) {
            let _ = writeln!(out, "-X {}", chain_of(key));
        }
        out.push_str("COMMIT\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xtables::ours_in;

    /// A ruleset of one bridge with the given ports, each port one chain
    /// with the given rule.
    fn wanted(ports: &[(&str, &str)]) -> Ruleset {
        let mut r = Ruleset::default();
        r.jumps.insert(
            "filter FORWARD".into(),
            Chain::new(vec![
                "-A FORWARD -m physdev --physdev-is-bridged -j neutrino-FORWARD".into(),
            ]),
        );
        r.chains.insert(
            "filter neutrino-FORWARD".into(),
            Chain::new(vec!["-A neutrino-FORWARD -o ntb-1 -j nt-b-1".into()]),
        );
        let mut dispatch: Vec<String> = ports
            .iter()
            .map(|(p, _)| {
                format!("-A nt-b-1 -m physdev --physdev-out {p} --physdev-is-bridged -j nt-i-{p}")
            })
            .collect();
        dispatch.push("-A nt-b-1 -j ACCEPT".into());
        r.chains
            .insert("filter nt-b-1".into(), Chain::new(dispatch));
        for (port, rule) in ports {
            r.chains.insert(
                format!("filter nt-i-{port}"),
                Chain::new(vec![
                    format!("-A nt-i-{port} {rule} -j RETURN"),
                    format!("-A nt-i-{port} -j DROP"),
                ]),
            );
        }
        r
    }

    /// What iptables-save would print for `r`, with a host rule besides.
    fn saved(r: &Ruleset) -> String {
        let mut out = String::from("*filter\n:FORWARD ACCEPT [0:0]\n");
        for key in r.chains.keys() {
            out.push_str(&format!(":{} - [0:0]\n", chain_of(key)));
        }
        out.push_str("-A FORWARD -s 10.9.9.9/32 -j DROP\n");
        for chain in r.jumps.values().chain(r.chains.values()) {
            for line in chain.lines.iter() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out + "COMMIT\n"
    }

    fn kernel(v4: &str) -> Kernel {
        Kernel {
            tables: [ours_in(v4), Ours::new()],
            sets: BTreeMap::new(),
        }
    }

    fn both(r: Ruleset) -> [Ruleset; 2] {
        [r, Ruleset::default()]
    }

    /// The record after a first sync on an empty kernel, read back.
    fn settled(r: &Ruleset) -> Applied {
        let first = plan(
            &both(r.clone()),
            &[],
            &Applied::default(),
            Some(&kernel("")),
        )
        .unwrap();
        let back = plan(
            &both(r.clone()),
            &[],
            &first.record,
            Some(&kernel(&saved(r))),
        )
        .unwrap();
        assert!(back.is_empty(), "{back:?}");
        back.record
    }

    #[test]
    fn a_first_sync_writes_every_chain_and_hooks_in_once() {
        let r = wanted(&[("a", "-p tcp")]);
        let first = plan(
            &both(r.clone()),
            &[],
            &Applied::default(),
            Some(&kernel("")),
        )
        .unwrap();
        assert_eq!(
            first.restore[0],
            "*filter\n:neutrino-FORWARD - [0:0]\n:nt-b-1 - [0:0]\n:nt-i-a - [0:0]\n\
             -A neutrino-FORWARD -o ntb-1 -j nt-b-1\n\
             -A nt-b-1 -m physdev --physdev-out a --physdev-is-bridged -j nt-i-a\n-A nt-b-1 -j ACCEPT\n\
             -A nt-i-a -p tcp -j RETURN\n-A nt-i-a -j DROP\n\
             -I FORWARD 1 -m physdev --physdev-is-bridged -j neutrino-FORWARD\nCOMMIT\n"
        );
        assert_eq!(first.restore[1], "");
        assert!(first.record.0.values().all(|e| e.kernel.is_none()));
        // Without a record, the jumps cannot be planned blind.
        assert_eq!(
            plan(&both(r), &[], &Applied::default(), None),
            Err(NeedsKernel)
        );
    }

    #[test]
    fn a_change_writes_only_the_chains_that_differ_and_reads_nothing() {
        let before = wanted(&[("a", "-p tcp"), ("b", "-p udp")]);
        let record = settled(&before);
        let same = plan(&both(before.clone()), &[], &record, None).unwrap();
        assert!(same.is_empty());
        assert_eq!(same.record, record);

        let edited = wanted(&[("a", "-p tcp"), ("b", "-p icmp")]);
        let change = plan(&both(edited), &[], &record, None).unwrap();
        assert_eq!(
            change.restore[0],
            "*filter\n:nt-i-b - [0:0]\n-A nt-i-b -p icmp -j RETURN\n-A nt-i-b -j DROP\nCOMMIT\n"
        );
        assert_eq!(
            change.record.0["4 filter nt-i-b"].kernel, None,
            "not read back yet"
        );
        assert_eq!(
            change.record.0["4 filter nt-i-a"],
            record.0["4 filter nt-i-a"]
        );

        let without_b = wanted(&[("a", "-p tcp")]);
        let removal = plan(&both(without_b), &[], &record, None).unwrap();
        assert_eq!(
            removal.restore[0],
            "*filter\n:nt-b-1 - [0:0]\n:nt-i-b - [0:0]\n\
             -A nt-b-1 -m physdev --physdev-out a --physdev-is-bridged -j nt-i-a\n-A nt-b-1 -j ACCEPT\n\
             -X nt-i-b\nCOMMIT\n"
        );
        assert!(!removal.record.0.contains_key("4 filter nt-i-b"));
    }

    #[test]
    fn a_drift_check_puts_back_exactly_what_changed_behind_the_agents_back() {
        let r = wanted(&[("a", "-p tcp"), ("b", "-p udp")]);
        let record = settled(&r);
        let flushed = saved(&r).replace("-A nt-i-b -p udp -j RETURN\n-A nt-i-b -j DROP\n", "");
        let repair = plan(&both(r.clone()), &[], &record, Some(&kernel(&flushed))).unwrap();
        assert_eq!(
            repair.restore[0],
            "*filter\n:nt-i-b - [0:0]\n-A nt-i-b -p udp -j RETURN\n-A nt-i-b -j DROP\nCOMMIT\n"
        );
        // Edited in place, same shape: the recorded print still tells.
        let edited = saved(&r).replace("-A nt-i-b -p udp", "-A nt-i-b -p sctp");
        let repair = plan(&both(r.clone()), &[], &record, Some(&kernel(&edited))).unwrap();
        assert!(
            repair.restore[0].starts_with("*filter\n:nt-i-b - [0:0]\n"),
            "{}",
            repair.restore[0]
        );

        let jump = "-A FORWARD -m physdev --physdev-is-bridged -j neutrino-FORWARD\n";
        let unhooked = saved(&r).replace(jump, "");
        let repair = plan(&both(r.clone()), &[], &record, Some(&kernel(&unhooked))).unwrap();
        assert_eq!(
            repair.restore[0],
            "*filter\n-I FORWARD 1 -m physdev --physdev-is-bridged -j neutrino-FORWARD\nCOMMIT\n"
        );
        let doubled = saved(&r).replace(jump, &format!("{jump}{jump}"));
        let repair = plan(&both(r.clone()), &[], &record, Some(&kernel(&doubled))).unwrap();
        assert_eq!(
            repair.restore[0],
            "*filter\n-D FORWARD -m physdev --physdev-is-bridged -j neutrino-FORWARD\n\
             -D FORWARD -m physdev --physdev-is-bridged -j neutrino-FORWARD\n\
             -I FORWARD 1 -m physdev --physdev-is-bridged -j neutrino-FORWARD\nCOMMIT\n"
        );
        // A chain of ours nobody wants is taken out; the host's rule stays.
        let extra = saved(&r).replace(
            ":FORWARD ACCEPT [0:0]\n",
            ":FORWARD ACCEPT [0:0]\n:nt-i-old - [0:0]\n",
        );
        let repair = plan(&both(r), &[], &record, Some(&kernel(&extra))).unwrap();
        assert_eq!(
            repair.restore[0],
            "*filter\n:nt-i-old - [0:0]\n-X nt-i-old\nCOMMIT\n"
        );
    }

    #[test]
    fn a_chain_written_since_the_last_check_is_taken_as_found_only_in_its_shape() {
        let before = wanted(&[("a", "-p tcp")]);
        let record = settled(&before);
        let after = wanted(&[("a", "-p udp")]);
        let written = plan(&both(after.clone()), &[], &record, None)
            .unwrap()
            .record;
        // As the kernel prints it: another spelling, the same rules.
        let respelled = saved(&after).replace("-p udp -j RETURN", "-p udp -m udp -j RETURN");
        let check = plan(
            &both(after.clone()),
            &[],
            &written,
            Some(&kernel(&respelled)),
        )
        .unwrap();
        assert!(check.is_empty(), "{check:?}");
        assert!(
            check.record.0["4 filter nt-i-a"].kernel.is_some(),
            "adopted"
        );
        let flushed = saved(&after).replace("-A nt-i-a -p udp -j RETURN\n", "");
        let check = plan(&both(after), &[], &written, Some(&kernel(&flushed))).unwrap();
        assert!(
            check.restore[0].starts_with("*filter\n:nt-i-a - [0:0]\n"),
            "{}",
            check.restore[0]
        );
    }

    #[test]
    fn an_emptied_node_needs_the_tables_to_unhook_and_then_drops_everything() {
        let r = wanted(&[("a", "-p tcp")]);
        let record = settled(&r);
        assert_eq!(
            plan(&both(Ruleset::default()), &[], &record, None),
            Err(NeedsKernel)
        );
        let gone = plan(
            &both(Ruleset::default()),
            &[],
            &record,
            Some(&kernel(&saved(&r))),
        )
        .unwrap();
        assert_eq!(
            gone.restore[0],
            "*filter\n:neutrino-FORWARD - [0:0]\n:nt-b-1 - [0:0]\n:nt-i-a - [0:0]\n\
             -D FORWARD -m physdev --physdev-is-bridged -j neutrino-FORWARD\n\
             -X neutrino-FORWARD\n-X nt-b-1\n-X nt-i-a\nCOMMIT\n"
        );
        assert_eq!(gone.record, Applied::default());
    }

    #[test]
    fn sets_are_filled_when_their_members_change_and_destroyed_when_unwanted() {
        let set = |members: &[&str]| IpSetPlan {
            name: "nt4-a".into(),
            group: crate::Key::new("t", "g"),
            ethertype: EtherType::IPv4,
            members: members.iter().map(|m| m.parse().unwrap()).collect(),
        };
        let empty = both(Ruleset::default());
        let first = plan(&empty, &[set(&["10.0.0.5/32"])], &Applied::default(), None).unwrap();
        assert_eq!(first.fill, [set(&["10.0.0.5/32"])]);
        let record = first.record;
        assert!(
            plan(&empty, &[set(&["10.0.0.5/32"])], &record, None)
                .unwrap()
                .is_empty()
        );
        let more = plan(
            &empty,
            &[set(&["10.0.0.5/32", "10.0.0.6/32"])],
            &record,
            None,
        )
        .unwrap();
        assert_eq!(more.fill.len(), 1);
        // The kernel lists a /32 without its length; one member it lost is
        // seen in the shape.
        let kernel_with = |members: &[&str]| Kernel {
            sets: [(
                "nt4-a".to_string(),
                members.iter().map(|m| m.to_string()).collect(),
            )]
            .into(),
            ..Kernel::default()
        };
        let check = plan(
            &empty,
            &[set(&["10.0.0.5/32"])],
            &record,
            Some(&kernel_with(&["10.0.0.5"])),
        )
        .unwrap();
        assert!(check.is_empty(), "{check:?}");
        let lost = plan(
            &empty,
            &[set(&["10.0.0.5/32"])],
            &check.record,
            Some(&kernel_with(&[])),
        )
        .unwrap();
        assert_eq!(lost.fill.len(), 1);
        let unwanted = plan(&empty, &[], &record, None).unwrap();
        assert_eq!(unwanted.destroy, ["nt4-a"]);
    }

    #[test]
    fn the_record_reads_back_as_written() {
        let record = settled(&wanted(&[("a", "-p tcp")]));
        let text = record.render();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("neutrino firewall record 2"));
        let fields: Vec<&str> = lines.next().unwrap().split('\t').collect();
        assert_eq!(fields[0], "4 filter FORWARD");
        for print in &fields[1..] {
            assert!(print.len() == 33 && print.as_bytes()[16] == b':', "{text}");
        }
        assert_eq!(Applied::parse(&text), Some(record));
        assert_eq!(
            Applied::parse("desired\tabc\ntable\t0\n"),
            None,
            "an older record"
        );
    }
}
