//! The CNI side of neutrino, as values: what a container runtime (or
//! Multus, delegating) asks of the plugin, and what the plugin answers, in
//! the CNI specification's own shapes and versions. No I/O here: the
//! binary reads the call from its environment and standard input, and the
//! node's agent does the work.

#![forbid(unsafe_code)]

pub mod call;
pub mod conf;
pub mod outcome;
pub mod selection;
pub mod version;
pub mod wire;

pub use call::{Call, Command};
pub use conf::NetConf;
pub use outcome::{CniError, Code};
