//! Command-line parsing and the subcommands. Errors gain their context here.

mod agent;
mod controller;
mod crds;
mod lab;
mod plan;
mod uninstall;

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// neutrino: OpenStack Neutron's networking model, Kubernetes-native.
#[derive(Parser)]
#[command(name = "neutrino", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Realise this node's share of the cluster in its kernel.
    Agent(agent::Args),
    /// Validate, allocate and write status for a cluster (leader-elected).
    Controller(controller::Args),
    /// Print the CustomResourceDefinitions, or write one file per kind.
    Crds(crds::Args),
    /// Show what each node's kernel would get from a set of manifests.
    Plan(plan::Args),
    /// Delete every neutrino object and empty every node, for `helm
    /// uninstall` (the chart's pre-delete hook runs it).
    Uninstall(uninstall::Args),
    /// Run neutrino on this machine: nodes as network namespaces, real DHCP.
    Lab(lab::Args),
    /// Print the version and the API version served.
    Version,
}

/// Reads a cluster file: ranges, physical networks, underlay MTU, nodes. A
/// file that names no nodes stands for `node-1` … `node-3` on its own
/// physical networks (the chart's ConfigMap is such a file).
pub fn read_cluster(path: &std::path::Path) -> anyhow::Result<neutrino::core::ClusterConfig> {
    use anyhow::Context;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let not_one = || format!("{}: not a cluster file", path.display());
    let mut config: neutrino::core::ClusterConfig =
        serde_saphyr::from_str(&text).with_context(not_one)?;
    let fields: serde_json::Value = serde_saphyr::from_str(&text).with_context(not_one)?;
    if fields.get("nodes").is_none() {
        config.nodes = neutrino::core::config::nodes_on(
            neutrino::core::config::DEFAULT_NODE_COUNT,
            &config.physical_networks,
        );
    }
    Ok(config)
}

/// Writes `text` to stdout; a reader that went away (`| head`) is not an error.
pub fn print(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Logs go to stderr, filtered by `NEUTRINO_LOG`; `NEUTRINO_LOG_FORMAT=json`
/// makes them one JSON object a line, for a cluster's log pipeline.
fn init_logs() -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_env("NEUTRINO_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match std::env::var("NEUTRINO_LOG_FORMAT").as_deref() {
        Err(_) | Ok("text") => logs.init(),
        Ok("json") => logs.json().flatten_event(true).init(),
        Ok(other) => anyhow::bail!("NEUTRINO_LOG_FORMAT: expected text or json, got {other:?}"),
    }
    Ok(())
}

pub fn main() -> ExitCode {
    // rustls cannot pick a provider when a build enables two (a dependency's
    // feature is enough): name ours, so no TLS connection panics later.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if let Err(e) = init_logs() {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    if matches!(cli.command, Command::Agent(_) | Command::Lab(_)) {
        // Agents hold a socket per metadata connection, netlink and
        // namespace handle; the lab runs them.
        if let Err(e) = neutrino::dataplane::metadata::gate::raise_open_files() {
            tracing::warn!(error = %e, "could not raise the limit on open files");
        }
    }
    let result = match cli.command {
        Command::Agent(args) => agent::run_command(args),
        Command::Controller(args) => controller::run_command(args),
        Command::Crds(args) => crds::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Uninstall(args) => uninstall::run_command(args),
        Command::Lab(args) => lab::run(args),
        Command::Version => print(&format!(
            "neutrino {} (API {}/{})\n",
            env!("CARGO_PKG_VERSION"),
            neutrino::api::GROUP,
            neutrino::api::VERSION
        ))
        .map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        ExitCode::FAILURE
    })
}
