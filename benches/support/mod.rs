//! What the benchmarks share: the root check, settings from the
//! environment, namespaces that go when dropped, and how a series of rounds
//! is printed.

#![allow(dead_code, reason = "each benchmark uses part of it")]

use neutrino::dataplane::netns;
use std::time::{Duration, Instant};

/// A network namespace, deleted when dropped.
pub struct Namespace(pub String);

impl Namespace {
    pub fn create(name: &str) -> Self {
        netns::create(name).unwrap();
        Self(name.to_string())
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = netns::delete(&self.0);
    }
}

/// Waits until the kernel has finished tearing down what earlier rounds
/// deleted: deleting a namespace or a link returns before the kernel has
/// freed it, and it frees it under the lock every link change takes.
/// Settled is three veth pairs in a row made and removed quickly, in a
/// probe namespace `probe`.
pub fn settle(probe: &str) {
    let probe = Namespace::create(probe);
    let mut quick = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    while quick < 3 && Instant::now() < deadline {
        let start = Instant::now();
        for args in [
            &[
                "link", "add", "ntprobe0", "type", "veth", "peer", "name", "ntprobe1",
            ][..],
            &["link", "del", "ntprobe0"][..],
        ] {
            let status = netns::command(&probe.0, "ip")
                .unwrap()
                .args(args)
                .status()
                .unwrap();
            assert!(status.success());
        }
        if start.elapsed() < Duration::from_millis(30) {
            quick += 1;
        } else {
            quick = 0;
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// `min–max` of some values, with `digits` decimals.
pub fn range(values: &[f64], digits: usize) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(0.0, f64::max);
    format!("{min:.digits$}–{max:.digits$}")
}

/// The rounds' ratios of one side to the other: `min–max` and the median.
pub fn ratios(ours: &[f64], raw: &[f64]) -> String {
    let mut ratios: Vec<f64> = ours.iter().zip(raw).map(|(o, r)| o / r).collect();
    ratios.sort_by(f64::total_cmp);
    let middle = ratios.len() / 2;
    let median = if ratios.len().is_multiple_of(2) {
        (ratios[middle - 1] + ratios[middle]) / 2.0
    } else {
        ratios[middle]
    };
    format!("{} (median {median:.2})", range(&ratios, 2))
}

/// Stops a benchmark that is not run as root, which it needs for
/// namespaces.
pub fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "the benchmark needs root"
    );
}

/// A number set in the environment, or `default`.
pub fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// A comma-separated list of numbers set in the environment, or `default`.
pub fn sizes(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}
