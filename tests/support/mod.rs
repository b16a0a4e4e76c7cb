//! Helpers for the tests that need root: network namespaces with unique
//! names that are removed when the test ends, however it ends.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

use neutrino::dataplane::netns;

/// A unique prefix for this test process's kernel objects.
pub fn unique(tag: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "t{}-{tag}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Network namespaces removed on drop, even when the test panics.
pub struct Namespaces {
    names: Vec<String>,
    prefix: String,
}

impl Namespaces {
    pub fn new(tag: &str) -> Self {
        Self {
            names: Vec::new(),
            prefix: unique(tag),
        }
    }

    /// The prefix every namespace of this guard starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Creates `<prefix>-<name>` and returns its full name.
    pub fn create(&mut self, name: &str) -> String {
        let full = format!("{}-{name}", self.prefix);
        netns::create(&full).expect("creating a namespace needs root");
        self.names.push(full.clone());
        full
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        // Anything else created under the prefix (by the code under test) goes too.
        for name in netns::list().unwrap_or_default() {
            if name.starts_with(&self.prefix) {
                let _ = netns::delete(&name);
            }
        }
        for name in &self.names {
            let _ = netns::delete(name);
        }
    }
}

/// Whether this process may create namespaces; tests that need it fail
/// with this message otherwise, rather than pretending to pass.
pub fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test needs root (network namespaces)"
    );
}
