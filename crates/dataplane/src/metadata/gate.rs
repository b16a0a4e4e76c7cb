//! How many connections the metadata service holds open: a few per caller,
//! a bounded number per listener and on the whole node, so that one
//! workload can neither crowd out the others nor run the agent out of file
//! descriptors. A port without port security can call from many addresses
//! of its network, so the per-listener bound is what keeps one network's
//! callers from taking another network's share.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use neutrino_core::metadata::Listener;

/// The service's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once from one address to one listener.
    pub per_source: usize,
    /// Connections open at once to one listener.
    pub per_listener: usize,
    /// Connections open at once on the node, all listeners together.
    pub overall: usize,
    /// How long a client has to send a request's head.
    pub header: Duration,
    /// The longest a connection is kept, busy or idle.
    pub lifetime: Duration,
}

impl Default for Limits {
    /// cloud-init makes one connection at a time and its requests take
    /// milliseconds; these leave a guest ample room and an attacker little.
    /// The whole service takes at most a quarter of the agent's file
    /// descriptors: the rest are the dataplane's.
    fn default() -> Self {
        Self {
            per_source: 8,
            per_listener: 64,
            overall: open_files().map_or(256, |n| (n / 4).clamp(64, 2048)),
            header: Duration::from_secs(5),
            lifetime: Duration::from_secs(30),
        }
    }
}

/// How many files the process may hold open (its soft limit).
fn open_files() -> Option<usize> {
    let (soft, _) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).ok()?;
    usize::try_from(soft).ok()
}

/// Raises the process's soft limit on open files to its hard limit, as
/// daemons holding many sockets do; the default soft 1024 is meant for
/// programs that use `select`. Returns the limit in force.
pub fn raise_open_files() -> std::io::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard)
}

/// Why a connection was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Full {
    Source,
    Listener,
    Node,
}

#[derive(Default)]
struct Counts {
    sources: HashMap<(Listener, IpAddr), usize>,
    listeners: HashMap<Listener, usize>,
    overall: usize,
}

/// The open connections, counted.
pub struct Gate {
    limits: Limits,
    counts: Mutex<Counts>,
}

impl Gate {
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            counts: Mutex::default(),
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A ticket for one more connection from `source` to `listener`, held
    /// while the connection is open; or which bound it would pass.
    pub fn admit(self: &Arc<Self>, listener: &Listener, source: IpAddr) -> Result<Ticket, Full> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let key = (listener.clone(), source);
        if counts.overall >= self.limits.overall {
            return Err(Full::Node);
        }
        if counts.listeners.get(listener).copied().unwrap_or(0) >= self.limits.per_listener {
            return Err(Full::Listener);
        }
        if counts.sources.get(&key).copied().unwrap_or(0) >= self.limits.per_source {
            return Err(Full::Source);
        }
        counts.overall += 1;
        *counts.listeners.entry(listener.clone()).or_default() += 1;
        *counts.sources.entry(key.clone()).or_default() += 1;
        Ok(Ticket {
            gate: self.clone(),
            key,
        })
    }

    fn release(&self, key: &(Listener, IpAddr)) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.overall -= 1;
        one_less(&mut counts.listeners, &key.0);
        one_less(&mut counts.sources, key);
    }
}

/// Counts one connection less for `key`. Entries go when they reach zero:
/// the maps hold open connections only, not every address ever seen.
fn one_less<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = counts.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            counts.remove(key);
        }
    }
}

/// One open connection, counted until dropped.
pub struct Ticket {
    gate: Arc<Gate>,
    key: (Listener, IpAddr),
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.release(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use neutrino_core::Key;
    use neutrino_core::metadata::Scope;

    fn listener(namespace: &str) -> Listener {
        Listener {
            namespace: namespace.into(),
            interface: "ns-1".into(),
            network: Key::new("tenant", namespace),
            scope: Scope::Node("node-1".into()),
        }
    }

    fn gate(per_source: usize, per_listener: usize, overall: usize) -> Arc<Gate> {
        Gate::new(Limits {
            per_source,
            per_listener,
            overall,
            ..Limits::default()
        })
    }

    #[test]
    fn a_source_gets_its_share_and_no_more_and_gets_it_back() {
        let gate = gate(2, 10, 10);
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let held: Vec<_> = (0..2)
            .map(|_| gate.admit(&listener("x"), a).unwrap())
            .collect();
        assert_eq!(gate.admit(&listener("x"), a).err(), Some(Full::Source));
        // The same address in another network is another caller.
        assert!(gate.admit(&listener("y"), a).is_ok());
        assert!(gate.admit(&listener("x"), b).is_ok());
        drop(held);
        assert!(gate.admit(&listener("x"), a).is_ok());
        assert!(gate.counts.lock().unwrap().sources.is_empty());
    }

    #[test]
    fn one_network_cannot_take_another_networks_share_nor_the_nodes() {
        let gate = gate(1, 3, 5);
        let source = |i: u8| IpAddr::from([10, 0, 0, i]);
        let x: Vec<_> = (0..3)
            .map(|i| gate.admit(&listener("x"), source(i)).unwrap())
            .collect();
        assert_eq!(
            gate.admit(&listener("x"), source(9)).err(),
            Some(Full::Listener)
        );
        let y: Vec<_> = (0..2)
            .map(|i| gate.admit(&listener("y"), source(i)).unwrap())
            .collect();
        assert_eq!(
            gate.admit(&listener("z"), source(0)).err(),
            Some(Full::Node)
        );
        drop((x, y));
        let counts = gate.counts.lock().unwrap();
        assert_eq!(counts.overall, 0);
        assert!(counts.listeners.is_empty());
    }
}
