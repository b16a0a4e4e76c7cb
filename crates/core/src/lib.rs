//! The pure core: validation, allocation and planning as functions over
//! values. Nothing here does I/O, reads a clock or depends on input order.
//!
//! The pipeline is [`resolve`] (a [`Snapshot`] plus the [`ClusterConfig`]
//! give every object either its allocations or the problems that keep it from
//! being ready), then [`plan::plan_node`] (a resolution plus one node's
//! identity give that node's desired dataplane).

#![forbid(unsafe_code)]

pub mod allocate;
pub mod attachment;
pub mod boundary;
pub mod config;
pub mod conntrack;
pub mod controller;
pub mod delta;
pub mod digest;
pub mod dnsmasq;
pub mod finalizers;
pub mod firewall;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod guard;
pub mod ident;
pub mod incremental;
pub mod inside;
pub mod kinds;
pub mod metadata;
pub mod names;
pub mod plan;
pub mod problem;
pub mod realisation;
pub mod reconcile;
pub mod resolve;
pub mod ruleset;
pub mod scope;
pub mod services;
pub mod snapshot;
pub mod status;
pub mod takeover;
pub mod tunnel;
pub mod xtables;

pub use config::{ClusterConfig, NodeAddresses, NodeConfig};
pub use ident::{Key, ObjectId};
pub use kinds::{ApiObject, Kind, Object};
pub use problem::{Problem, Reason};
pub use resolve::{Resolution, resolve};
pub use snapshot::Snapshot;
