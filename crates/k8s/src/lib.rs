//! The Kubernetes adapter: the controller and the agent against a real API
//! server, carrying out what the pure core decides.

#![forbid(unsafe_code)]

pub mod agent;
pub mod cni;
pub mod controller;
pub mod events;
pub mod execute;
pub mod health;
pub mod metadata;
pub mod metrics;
pub mod pace;
pub mod stores;
pub mod takeover;
pub mod uninstall;
