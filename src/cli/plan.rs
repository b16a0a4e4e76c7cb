//! `neutrino plan`: validation, allocation and the planner over manifests
//! on disk, before anything is applied.

use anyhow::{Context, bail};
use clap::ValueEnum;
use std::path::PathBuf;
use std::process::ExitCode;

use neutrino::core::plan::{NodePlan, plan_node, render};
use neutrino::core::{ClusterConfig, resolve};
use neutrino::manifest;

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Yaml,
    Json,
}

#[derive(clap::Args)]
pub struct Args {
    /// A manifest file, or a folder of them (multi-document YAML).
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    path: PathBuf,
    /// The node to plan for; every node when omitted. Repeatable.
    #[arg(long)]
    node: Vec<String>,
    /// How many default nodes there are (node-1 … node-N).
    #[arg(long, default_value_t = neutrino::core::config::DEFAULT_NODE_COUNT, conflicts_with = "cluster")]
    nodes: usize,
    /// A cluster file: underlayMTU, vniRanges, physicalNetworks and nodes.
    #[arg(long, value_name = "FILE")]
    cluster: Option<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

fn cluster(args: &Args) -> anyhow::Result<ClusterConfig> {
    let config = match &args.cluster {
        None => ClusterConfig::with_nodes(args.nodes),
        Some(path) => super::read_cluster(path)?,
    };
    if let Err(errors) = config.validate() {
        bail!(
            "the cluster configuration is invalid:\n  {}",
            errors.join("\n  ")
        );
    }
    Ok(config)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = cluster(&args)?;
    let manifests = match manifest::load(&args.path) {
        Ok(m) => m,
        Err(errors) => {
            for error in &errors {
                eprintln!("{error}");
            }
            eprintln!("{} manifest error(s); nothing planned", errors.len());
            return Ok(ExitCode::FAILURE);
        }
    };
    tracing::debug!(objects = manifests.sources.len(), path = %args.path.display(), "manifests read");
    let resolution = resolve(&manifests.snapshot, &config);
    let problems = resolution.problems();
    tracing::debug!(
        problems = problems.len(),
        nodes = config.nodes.len(),
        "resolved"
    );
    if !problems.is_empty() {
        for problem in &problems {
            let source = manifests
                .sources
                .get(&problem.object)
                .map_or(String::new(), |s| format!("{s}: "));
            eprintln!("{source}{problem} [{}]", problem.reason.as_str());
        }
        eprintln!(
            "{} object(s) would not become Ready; nothing planned",
            problems.len()
        );
        return Ok(ExitCode::FAILURE);
    }

    let nodes: Vec<_> = if args.node.is_empty() {
        config.nodes.iter().collect()
    } else {
        args.node
            .iter()
            .map(|name| {
                config.node(name).with_context(|| {
                    let known: Vec<&str> = config.nodes.iter().map(|n| n.name.as_str()).collect();
                    format!(
                        "node {name} is not known (known nodes: {})",
                        known.join(", ")
                    )
                })
            })
            .collect::<anyhow::Result<_>>()?
    };
    let plans: Vec<NodePlan> = nodes
        .into_iter()
        .map(|n| plan_node(&resolution, &config, n))
        .collect();
    match args.output {
        Output::Text => {
            let texts: Vec<String> = plans.iter().map(render::text).collect();
            super::print(&texts.join("\n"))?;
        }
        Output::Yaml => {
            let mut text = String::new();
            for plan in &plans {
                text.push_str("---\n");
                text.push_str(&serde_saphyr::to_string(plan).context("rendering YAML")?);
            }
            super::print(&text)?;
        }
        Output::Json => {
            let json = if plans.len() == 1 {
                serde_json::to_string_pretty(&plans[0])
            } else {
                serde_json::to_string_pretty(&plans)
            };
            super::print(&format!("{}\n", json.context("rendering JSON")?))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
