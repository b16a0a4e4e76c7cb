//! What the benchmarks share: namespaces that go when dropped, and how a
//! series of rounds is printed.

use neutrino::dataplane::netns;

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
