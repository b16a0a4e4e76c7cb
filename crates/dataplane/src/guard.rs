//! The node's port guard in nftables' bridge family (see
//! [`neutrino_core::guard`]), applied with `nft -f`, each change in one
//! transaction: after a change only the chains it touches; the whole
//! table at start, and when a drift check finds it changed behind the
//! agent's back. A node without filtered ports has no table.

use neutrino_core::guard::{self, Shape};
use neutrino_core::plan::PortFilter;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::iptables::{FirewallError, nft_listing, run};

/// What the table holds, as last applied.
struct Applied {
    /// Each port's rules; none when there is no table.
    chains: BTreeMap<String, String>,
    /// Each chain's rules as a drift check listed them, for chains not
    /// written since: a later check compares them whole, so that a rule
    /// replaced in place shows too. A chain just written is held to its
    /// shape until the next check lists it.
    seen: BTreeMap<String, String>,
    checked: Instant,
}

pub struct Guard {
    applied: Mutex<Option<Applied>>,
    drift_every: Duration,
}

/// The table as nft lists it in `namespace`; empty when there is none.
fn listing(namespace: Option<&str>) -> String {
    nft_listing(namespace, "bridge", guard::TABLE)
}

fn deletion() -> String {
    let table = guard::TABLE;
    format!("table bridge {table} {{}}\ndelete table bridge {table}\n")
}

impl Guard {
    /// A guard that reads its table back at most every `drift_every`.
    pub fn new(drift_every: Duration) -> Self {
        Guard {
            applied: Mutex::new(None),
            drift_every,
        }
    }

    fn applied(&self) -> MutexGuard<'_, Option<Applied>> {
        self.applied.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Brings the table in `namespace` (the current one when `None`) to
    /// `ports`; the number of `nft` transactions.
    pub fn sync(
        &self,
        namespace: Option<&str>,
        ports: &[PortFilter],
    ) -> Result<usize, FirewallError> {
        let wanted = guard::chains(ports);
        let mut applied = self.applied();
        if let Some(last) = applied.as_mut()
            && last.chains == wanted
        {
            if last.checked.elapsed() < self.drift_every {
                return Ok(0);
            }
            last.checked = Instant::now();
            let (shape, rules) = Shape::listed_with_rules(&listing(namespace));
            let kept = shape == Shape::of(&last.chains)
                && (rules.iter())
                    .all(|(chain, listed)| last.seen.get(chain).is_none_or(|seen| seen == listed));
            if kept {
                last.seen = rules;
                return Ok(0);
            }
            tracing::warn!("the ports' guard table changed behind the agent's back; replacing it");
            *applied = None;
        }
        let script = match (&*applied, wanted.is_empty()) {
            (Some(last), true) if last.chains.is_empty() => String::new(),
            (None, true) if listing(namespace).is_empty() => String::new(),
            (_, true) => deletion(),
            (Some(last), false) if !last.chains.is_empty() => guard::delta(&last.chains, &wanted),
            (_, false) => guard::table(&wanted),
        };
        let writes = match script.is_empty() {
            true => 0,
            false => match run(namespace, "nft", &["-f", "-"], &script) {
                Ok(_) => 1,
                Err(e) => {
                    // Unknown now: replaced whole next time.
                    *applied = None;
                    return Err(e);
                }
            },
        };
        // Chains the write left alone keep their listings.
        let seen = match applied.take() {
            Some(last) => {
                let unchanged: BTreeSet<String> = (wanted.iter())
                    .filter(|(interface, rules)| last.chains.get(*interface) == Some(rules))
                    .map(|(interface, _)| guard::chain(interface))
                    .collect();
                let mut seen = last.seen;
                seen.retain(|chain, _| unchanged.contains(chain));
                seen
            }
            None => BTreeMap::new(),
        };
        *applied = Some(Applied {
            chains: wanted,
            seen,
            checked: Instant::now(),
        });
        Ok(writes)
    }
}

/// Takes neutrino's guard table out of `namespace`, if it is there; the
/// number of `nft` transactions.
pub fn remove(namespace: Option<&str>) -> Result<usize, FirewallError> {
    if listing(namespace).is_empty() {
        return Ok(0);
    }
    run(namespace, "nft", &["-f", "-"], &deletion()).map(|_| 1)
}
