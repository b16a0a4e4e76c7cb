//! `neutrino agent`: one node's dataplane, driven from the API server.

use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use neutrino::core::ClusterConfig;
use neutrino::core::tunnel::EndpointRule;
use neutrino::core::xtables::Choice;
use neutrino::dataplane::agent::{Agent, AgentConfig, namespace_prefix};
use neutrino::dataplane::tunnel;
use neutrino::k8s::agent::{Options, run};

#[derive(clap::Args)]
pub struct Args {
    /// This node's name.
    #[arg(long, env = "NODE_NAME", required_unless_present = "remove")]
    node: Option<String>,
    /// Remove everything neutrino made on this node — its links, DHCP and
    /// router namespaces, dnsmasq servers, iptables chains (both backends),
    /// ipsets and the state directory — and exit. Needs no API server.
    #[arg(long)]
    remove: bool,
    /// The VXLAN tunnel endpoint, given outright; it must be one of the node's addresses.
    #[arg(long, env = "NEUTRINO_TUNNEL_IP", conflicts_with = "tunnel_endpoint")]
    tunnel_ip: Option<IpAddr>,
    /// How to choose the tunnel endpoint among the node's addresses:
    /// default-route, interface=NAME-PATTERN (the whole name, a regular
    /// expression), cidr=CIDR[,CIDR...] or can-reach=HOST.
    #[arg(
        long,
        env = "NEUTRINO_TUNNEL_ENDPOINT",
        value_name = "RULE",
        default_value = "default-route"
    )]
    tunnel_endpoint: EndpointRule,
    /// A physical network and this node's interface on it: PHYSNET=INTERFACE. Repeatable.
    #[arg(long = "physical-interface", value_name = "PHYSNET=INTERFACE")]
    physical_interfaces: Vec<String>,
    /// Routers may be scheduled onto this node.
    #[arg(long)]
    gateway: bool,
    /// Program this network namespace instead of the agent's own.
    #[arg(long)]
    netns: Option<String>,
    /// Where DHCP servers and the firewall keep their files.
    #[arg(long, default_value = "/var/lib/neutrino/agent")]
    state: PathBuf,
    /// A cluster file: vniRanges, physicalNetworks, underlayMTU, tunnelCIDRs.
    #[arg(long, value_name = "FILE", env = "NEUTRINO_CLUSTER")]
    cluster: Option<PathBuf>,
    /// The iptables backend to write through: auto (the host's, as
    /// kube-proxy's iptables wrapper tells it), nft or legacy.
    #[arg(long, env = "NEUTRINO_IPTABLES_BACKEND", default_value = "auto")]
    iptables_backend: Choice,
    /// Serve neutrino's CNI plugin on this Unix socket (the plugin's
    /// `socket`, /run/neutrino/cni.sock unless its configuration says).
    #[arg(long, value_name = "PATH", env = "NEUTRINO_CNI_SOCKET")]
    cni_socket: Option<PathBuf>,
    /// The CNI plugin as the node's runtime finds it (e.g.
    /// /host/cni-bin/neutrino): removed with everything else when the
    /// agent is asked to remove neutrino from the node, and put back at
    /// start, from beside this binary, if it is missing.
    #[arg(long, value_name = "PATH", requires = "cni_socket")]
    cni_plugin: Option<PathBuf>,
    /// Seconds between applies (and heartbeats) when nothing changes.
    #[arg(long, default_value_t = 30)]
    resync_seconds: u64,
    /// Serve /healthz (the agent answers) and /readyz (it has applied its
    /// node's plan) here, e.g. 127.0.0.1:9741.
    #[arg(long, value_name = "ADDRESS:PORT")]
    health_listen: Option<std::net::SocketAddr>,
}

fn mappings(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((physnet, interface)) if !physnet.is_empty() && !interface.is_empty() => {
                Ok((physnet.to_string(), interface.to_string()))
            }
            _ => bail!(
                "--physical-interface {pair:?}: write it as PHYSNET=INTERFACE, e.g. physnet1=eth1"
            ),
        })
        .collect()
}

/// `--remove`: the node's share of neutrino taken out of its kernel.
async fn remove(args: &Args) -> anyhow::Result<ExitCode> {
    let prefix = namespace_prefix(args.netns.as_deref());
    let agent = Agent::new(AgentConfig {
        netns: args.netns.clone(),
        namespace_prefix: prefix,
        state_dir: args.state.clone(),
        iptables: args.iptables_backend,
        drift_check: Duration::ZERO,
    })
    .await?;
    let report = agent.remove_all().await;
    let mut out = format!(
        "removed: {} kernel writes, {} namespaces, {} DHCP servers\n",
        report.writes,
        report.namespaces_removed.len(),
        report.dhcp.stopped.len()
    );
    for error in &report.errors {
        out.push_str(&format!("could not: {error}\n"));
    }
    super::print(&out)?;
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn run_command(args: Args) -> anyhow::Result<ExitCode> {
    if args.remove {
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the runtime")?
            .block_on(remove(&args));
    }
    let node = args.node.clone().context("--node is needed")?;
    let physical_interfaces = mappings(&args.physical_interfaces)?;
    let mut cluster = match &args.cluster {
        None => ClusterConfig::default(),
        Some(path) => super::read_cluster(path)?,
    };
    cluster.nodes.clear();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let rule = match args.tunnel_ip {
            Some(ip) => EndpointRule::Address(ip),
            None => args.tunnel_endpoint,
        };
        let (tunnel_ip, endpoint) = tunnel::endpoint(args.netns.as_deref(), &rule).await?;
        tracing::info!(%tunnel_ip, rule = %endpoint.rule, interface = %endpoint.interface, "tunnel endpoint chosen");
        let client = kube::Client::try_default()
            .await
            .context("finding the API server (in-cluster config, KUBECONFIG or ~/.kube/config)")?;
        run(
            client,
            Options {
                node,
                tunnel_ip,
                tunnel_endpoint: Some(endpoint),
                physical_interfaces,
                gateway: args.gateway,
                netns: args.netns,
                state_dir: args.state,
                cluster,
                resync: Duration::from_secs(args.resync_seconds),
                iptables: args.iptables_backend,
                cni_socket: args.cni_socket,
                cni_plugin: args.cni_plugin,
                health_listen: args.health_listen,
            },
        )
        .await?;
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn physical_interfaces_are_physnet_equals_interface() {
        let parsed = mappings(&["physnet1=eth1".into(), "extnet=eth2".into()]).unwrap();
        assert_eq!(parsed["physnet1"], "eth1");
        let error = mappings(&["physnet1".into()]).unwrap_err().to_string();
        assert!(error.contains("PHYSNET=INTERFACE"), "{error}");
    }
}
