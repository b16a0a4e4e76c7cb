//! The node's own boundary (see [`neutrino_core::boundary`]) in nftables:
//! written whole with `nft -f` when it changes, taken out when the node
//! has no tenant bridge, and read back once per drift check, when a
//! listing that differs from the one taken after the last write puts it
//! back. The tables are a few lines: there is no delta to make.

use neutrino_core::boundary::{self, Boundary};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::iptables::{FirewallError, nft_listing, run};

/// What was last written: the boundary (`None`: no tables), and the
/// tables as listed right after.
struct Applied {
    boundary: Option<Boundary>,
    listing: String,
    checked: Instant,
}

pub struct HostBoundary {
    applied: Mutex<Option<Applied>>,
    drift_every: Duration,
}

/// Both tables as nft lists them in `namespace`; empty when neither is
/// there.
fn listing(namespace: Option<&str>) -> String {
    ["arp", "inet"]
        .iter()
        .map(|family| nft_listing(namespace, family, boundary::TABLE))
        .collect()
}

impl HostBoundary {
    /// A boundary read back at most every `drift_every`.
    pub fn new(drift_every: Duration) -> Self {
        HostBoundary {
            applied: Mutex::new(None),
            drift_every,
        }
    }

    /// Brings the tables in `namespace` (the current one when `None`) to
    /// `wanted`, or takes them out for `None`; the number of `nft`
    /// transactions.
    pub fn sync(
        &self,
        namespace: Option<&str>,
        wanted: Option<&Boundary>,
    ) -> Result<usize, FirewallError> {
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        let found = match applied.as_mut() {
            Some(last) if last.boundary.as_ref() == wanted => {
                if last.checked.elapsed() < self.drift_every {
                    return Ok(0);
                }
                last.checked = Instant::now();
                let found = listing(namespace);
                if found == last.listing {
                    return Ok(0);
                }
                tracing::warn!(
                    "the node's boundary tables changed behind the agent's back; replacing them"
                );
                found
            }
            _ => listing(namespace),
        };
        *applied = None;
        let script = match wanted {
            Some(wanted) => boundary::script(wanted),
            None if found.is_empty() => String::new(),
            None => boundary::removal(),
        };
        if !script.is_empty() {
            run(namespace, "nft", &["-f", "-"], &script)?;
        }
        *applied = Some(Applied {
            boundary: wanted.cloned(),
            listing: match wanted {
                Some(_) => listing(namespace),
                None => String::new(),
            },
            checked: Instant::now(),
        });
        Ok(usize::from(!script.is_empty()))
    }
}
