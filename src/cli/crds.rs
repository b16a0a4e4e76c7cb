//! `neutrino crds`: the CRDs generated from the Rust types.

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Write one file per kind into this folder instead of printing.
    #[arg(long)]
    dir: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let crds = neutrino::api::crds();
    match args.dir {
        None => {
            let text: String = crds
                .iter()
                .map(|(_, crd)| format!("---\n{}", neutrino::api::crd_yaml(crd)))
                .collect();
            super::print(&text)?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for (file, crd) in &crds {
                let path = dir.join(file);
                std::fs::write(&path, neutrino::api::crd_yaml(crd))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
