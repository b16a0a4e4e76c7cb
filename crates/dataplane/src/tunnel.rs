//! Reads what choosing a tunnel endpoint needs from the kernel — the
//! namespace's addresses and the route the rule names — and lets the core
//! choose.

use std::net::IpAddr;

use super::netlink::{Netlink, NetlinkError};
use neutrino_api::TunnelEndpoint;
use neutrino_core::tunnel::{EndpointError, EndpointRule, choose};

#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error(transparent)]
    Kernel(#[from] NetlinkError),
    #[error("tunnel endpoint {rule}: resolving {host}: {cause}")]
    Resolve {
        rule: String,
        host: String,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Choose(#[from] EndpointError),
}

/// The tunnel endpoint `rule` chooses in `netns` (the agent's own when `None`).
pub async fn endpoint(
    netns: Option<&str>,
    rule: &EndpointRule,
) -> Result<(IpAddr, TunnelEndpoint), TunnelError> {
    let netlink = Netlink::connect(netns).await?;
    let addresses = netlink.host_addresses().await?;
    let route = match rule {
        EndpointRule::DefaultRoute => netlink.default_route().await?,
        EndpointRule::CanReach(host) => match resolve(host).await {
            Ok(Some(destination)) => netlink.route_to(destination).await?,
            Ok(None) => None,
            Err(cause) => {
                return Err(TunnelError::Resolve {
                    rule: rule.to_string(),
                    host: host.clone(),
                    cause,
                });
            }
        },
        _ => None,
    };
    Ok(choose(rule, &addresses, route)?)
}

async fn resolve(host: &str) -> std::io::Result<Option<IpAddr>> {
    if let Ok(ip) = host.parse() {
        return Ok(Some(ip));
    }
    Ok(tokio::net::lookup_host((host, 0))
        .await?
        .next()
        .map(|a| a.ip()))
}
