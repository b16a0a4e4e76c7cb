//! The node's own boundary (see [`neutrino_core::boundary`]) in nftables:
//! written whole with `nft -f` when it changes, and read back once per
//! drift check, when a listing that differs from the one taken after the
//! last write puts it back. The tables are a few lines: there is no delta
//! to make.

use neutrino_core::boundary::{self, Boundary};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::iptables::{FirewallError, run};

struct Applied {
    boundary: Boundary,
    listing: String,
    checked: Instant,
}

pub struct HostBoundary {
    applied: Mutex<Option<Applied>>,
    drift_every: Duration,
}

/// Both tables as nft lists them in `namespace`.
fn listing(namespace: Option<&str>) -> String {
    ["arp", "inet"]
        .iter()
        .map(|family| {
            run(
                namespace,
                "nft",
                &["list", "table", family, boundary::TABLE],
                "",
            )
            .unwrap_or_default()
        })
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

    fn applied(&self) -> MutexGuard<'_, Option<Applied>> {
        self.applied.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Brings the tables in `namespace` (the current one when `None`) to
    /// `wanted`; the number of `nft` transactions.
    pub fn sync(&self, namespace: Option<&str>, wanted: &Boundary) -> Result<usize, FirewallError> {
        let mut applied = self.applied();
        if let Some(last) = applied.as_mut()
            && &last.boundary == wanted
        {
            if last.checked.elapsed() < self.drift_every {
                return Ok(0);
            }
            last.checked = Instant::now();
            if listing(namespace) == last.listing {
                return Ok(0);
            }
            tracing::warn!(
                "the node's boundary tables changed behind the agent's back; replacing them"
            );
        }
        *applied = None;
        run(namespace, "nft", &["-f", "-"], &boundary::script(wanted))?;
        *applied = Some(Applied {
            boundary: wanted.clone(),
            listing: listing(namespace),
            checked: Instant::now(),
        });
        Ok(1)
    }
}

impl HostBoundary {
    /// Takes the tables out of `namespace`, if they are there; the number
    /// of `nft` transactions.
    pub fn remove(&self, namespace: Option<&str>) -> Result<usize, FirewallError> {
        let mut applied = self.applied();
        if applied.is_none() && listing(namespace).is_empty() {
            return Ok(0);
        }
        *applied = None;
        remove(namespace)
    }
}

/// Takes the boundary's tables out of `namespace`, if they are there; the
/// number of `nft` transactions.
pub fn remove(namespace: Option<&str>) -> Result<usize, FirewallError> {
    if listing(namespace).is_empty() {
        return Ok(0);
    }
    run(namespace, "nft", &["-f", "-"], &boundary::removal()).map(|_| 1)
}
