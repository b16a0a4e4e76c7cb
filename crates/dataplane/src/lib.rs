//! Adapters that touch the kernel: network namespaces, rtnetlink, dnsmasq.
//! They take the core's plans and diffs and do nothing clever themselves.

pub mod agent;
pub mod backend;
pub mod boundary;
pub mod conntrack;
pub mod dnsmasq;
#[cfg(feature = "fake")]
pub mod fake;
pub mod files;
pub mod guard;
pub mod ipconfig;
pub mod iptables;
pub mod kernel_view;
pub mod metadata;
pub mod netlink;
pub mod netns;
pub mod tunnel;
pub mod workload;
