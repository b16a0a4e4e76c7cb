//! `neutrino lab`: the whole system in network namespaces on this machine.

use anyhow::Context;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

use neutrino::core::Key;
use neutrino::lab::{DEFAULT_STATE_DIR, Lab, Summary};

#[derive(clap::Args)]
pub struct Args {
    /// Where the lab keeps its state between commands.
    #[arg(long, global = true, env = "NEUTRINO_LAB_STATE", default_value = DEFAULT_STATE_DIR)]
    state: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the nodes, start their agents and apply the manifests.
    Up {
        /// A manifest file, or a folder of them.
        #[arg(short = 'f', long = "filename", value_name = "PATH")]
        path: PathBuf,
        /// How many nodes (node-1 … node-N).
        #[arg(long, default_value_t = neutrino::core::config::DEFAULT_NODE_COUNT)]
        nodes: usize,
        /// Put NAME- before every namespace, to run labs side by side.
        #[arg(long, default_value = "")]
        name: String,
        /// Put a real cluster in the middle: apply the manifests to the API
        /// server this kubeconfig names, run `neutrino controller` against
        /// it, and make every node a `neutrino agent`.
        #[arg(long, value_name = "FILE")]
        kubeconfig: Option<PathBuf>,
        /// With --kubeconfig: run the controller and the agents with the
        /// service accounts of this Helm release of charts/neutrino, as its
        /// pods would (tokens from the TokenRequest API; each agent's bound
        /// to a stand-in pod on its node).
        #[arg(long, value_name = "NAMESPACE/NAME", requires = "kubeconfig")]
        chart_release: Option<neutrino::lab::ChartRelease>,
    },
    /// Make the lab hold exactly the objects under PATH (added, changed, removed).
    Apply {
        #[arg(short = 'f', long = "filename", value_name = "PATH")]
        path: PathBuf,
    },
    /// Objects, allocations, per-node readiness and the workloads' leases.
    Status,
    /// Run a command in a port's workload, e.g. `lab exec tenant-a/web-1 -- ping 10.10.0.12`,
    /// or on the host outside, on the external networks (`lab exec outside -- ...`).
    Exec {
        /// The port, as NAMESPACE/NAME, or `outside`.
        port: String,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Remove everything the lab created, and nothing else.
    Down,
    /// A node's agent; `lab up` starts one per node.
    #[command(hide = true)]
    Agent {
        #[arg(long)]
        node: String,
    },
    /// Keeps a node's agent (`neutrino ARGS`) running; `lab up` starts one per node.
    #[command(hide = true)]
    Supervise {
        #[arg(long)]
        node: String,
        #[arg(last = true, required = true)]
        args: Vec<std::ffi::OsString>,
    },
}

fn print_summary(summary: &Summary) -> anyhow::Result<()> {
    let mut text = format!("generation {} realised on every node\n", summary.generation);
    for (port, workload) in &summary.workloads {
        let lease = workload
            .lease
            .as_ref()
            .map_or("no address".to_string(), |l| {
                let mut took: Vec<String> = Vec::new();
                if !l.ip.is_empty() {
                    took.push(format!("{}/{} by DHCP", l.ip, l.prefix));
                }
                took.extend(
                    l.ipv6
                        .iter()
                        .map(|v6| format!("{} by {}", v6.address, v6.by)),
                );
                took.join(", ")
            });
        text.push_str(&format!(
            "  {port} on {}: {lease} (namespace {})\n",
            workload.node, workload.namespace
        ));
    }
    super::print(&text)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let binary = std::env::current_exe().context("finding the neutrino binary")?;
    let lab = Lab::new(&args.state, binary);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        match args.command {
            Command::Up {
                path,
                nodes,
                name,
                kubeconfig,
                chart_release,
            } => {
                let summary = match kubeconfig {
                    Some(file) => {
                        lab.up_on_cluster(&path, nodes, &name, &file, chart_release.as_ref())
                            .await?
                    }
                    None => lab.up(&path, nodes, &name).await?,
                };
                print_summary(&summary)?;
            }
            Command::Apply { path } => {
                let summary = lab.apply(&path).await?;
                print_summary(&summary)?;
            }
            Command::Status => super::print(&lab.status().await?)?,
            Command::Exec { port, command } => {
                let code = if port == "outside" {
                    lab.exec_in(&lab.outside_namespace()?, &command)?
                } else {
                    let (namespace, name) = port.split_once('/').with_context(|| {
                        format!("{port:?}: name the port as NAMESPACE/NAME, or `outside`")
                    })?;
                    lab.exec(&Key::new(namespace, name), &command)?
                };
                return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
            }
            Command::Down => {
                let removed = lab.down()?;
                super::print(&format!(
                    "removed {} things: {}\n",
                    removed.len(),
                    removed.join(", ")
                ))?;
            }
            Command::Agent { node } => {
                neutrino::lab::agent::run(lab.files().clone(), &node).await?;
            }
            Command::Supervise { node, args } => {
                neutrino::lab::supervisor::supervise(lab.files(), &node, &args).await?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
