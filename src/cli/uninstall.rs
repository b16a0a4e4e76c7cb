//! `neutrino uninstall`: the chart's pre-delete hook.

use anyhow::Context;
use std::process::ExitCode;
use std::time::Duration;

use neutrino::k8s::uninstall::uninstall;

#[derive(clap::Args)]
pub struct Args {
    /// Seconds to wait for the controller to release the deleted objects,
    /// and again for the agents to empty their nodes.
    #[arg(long, default_value_t = 120)]
    timeout_seconds: u64,
}

pub fn run_command(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .context("finding the API server (in-cluster config, KUBECONFIG or ~/.kube/config)")?;
        let done = uninstall(&client, Duration::from_secs(args.timeout_seconds)).await?;
        let mut out = format!(
            "deleted {} objects; {} nodes emptied\n",
            done.deleted,
            done.nodes_clean.len()
        );
        for object in &done.finalizers_released {
            out.push_str(&format!(
                "released the finalizers of {object}: no controller did\n"
            ));
        }
        for claim in &done.claims_deleted {
            out.push_str(&format!("deleted {claim}: no controller released it\n"));
        }
        for node in &done.nodes_not_clean {
            out.push_str(&format!(
                "not emptied: {node}; run `neutrino agent --remove` there\n"
            ));
        }
        super::print(&out)?;
        Ok(ExitCode::SUCCESS)
    })
}
