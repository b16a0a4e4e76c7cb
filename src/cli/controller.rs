//! `neutrino controller`: validation, allocation and status for a cluster.

use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use neutrino::core::ClusterConfig;
use neutrino::k8s::controller::{Options, run};

#[derive(clap::Args)]
pub struct Args {
    /// A cluster file: vniRanges, physicalNetworks, underlayMTU, tunnelCIDRs. Nodes come
    /// from the agents' NodeAgent records.
    #[arg(long, value_name = "FILE", env = "NEUTRINO_CLUSTER")]
    cluster: Option<PathBuf>,
    /// Where /metrics, /healthz and /readyz listen.
    #[arg(long, default_value = "0.0.0.0:8080", env = "NEUTRINO_LISTEN")]
    listen: SocketAddr,
    /// The namespace of the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "neutrino-system")]
    lease_namespace: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds between rounds when nothing changes.
    #[arg(long, default_value_t = 30)]
    resync_seconds: u64,
    /// Seconds the leader Lease holds without renewal; a replica that loses
    /// it stops writing within this time.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..))]
    lease_seconds: u64,
}

pub fn run_command(args: Args) -> anyhow::Result<ExitCode> {
    let mut cluster = match &args.cluster {
        None => ClusterConfig::default(),
        Some(path) => super::read_cluster(path)?,
    };
    cluster.nodes.clear();
    let identity = args
        .identity
        .unwrap_or_else(|| format!("neutrino-controller-{}", std::process::id()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let client = kube::Client::try_default()
            .await
            .context("finding the API server (in-cluster config, KUBECONFIG or ~/.kube/config)")?;
        run(
            client,
            Options {
                cluster,
                listen: args.listen,
                lease_namespace: args.lease_namespace,
                identity,
                resync: Duration::from_secs(args.resync_seconds),
                lease_duration: Duration::from_secs(args.lease_seconds),
            },
        )
        .await?;
        Ok(ExitCode::SUCCESS)
    })
}
