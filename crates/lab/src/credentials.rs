//! The credentials a cluster lab's components run with: the kubeconfig's
//! own user, or the service accounts of a release of the chart.

use std::path::{Path, PathBuf};

use super::cluster::{self, ChartRelease};
use super::state::LabState;
use super::{LEASE_NAMESPACE, Lab, LabError};
use neutrino_core::ClusterConfig;

impl Lab {
    /// Kubeconfigs with the chart's service-account tokens: the
    /// controller's, and each agent's bound to its node.
    pub(super) async fn write_service_account_kubeconfigs(
        &self,
        client: &kube::Client,
        admin: &Path,
        release: &ChartRelease,
        config: &ClusterConfig,
    ) -> Result<(), LabError> {
        let token = cluster::service_account_token(client, release, "controller", None).await?;
        self.write_secret(
            &self.files.controller_kubeconfig(),
            &cluster::token_kubeconfig(admin, &token)?,
        )?;
        for node in &config.nodes {
            let token =
                cluster::service_account_token(client, release, "agent", Some(&node.name)).await?;
            std::fs::create_dir_all(self.files.node_dir(&node.name))
                .map_err(|e| LabError::io("creating the node's directory".into(), e))?;
            self.write_secret(
                &self.files.agent_kubeconfig(&node.name),
                &cluster::token_kubeconfig(admin, &token)?,
            )?;
        }
        Ok(())
    }

    pub(super) fn write_secret(&self, path: &Path, text: &str) -> Result<(), LabError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let what = || format!("writing {}", path.display());
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| LabError::io(what(), e))
    }

    /// The kubeconfig a cluster lab's component runs with.
    pub(super) fn component_kubeconfig(
        &self,
        state: &LabState,
        agent_of: Option<&str>,
    ) -> Option<PathBuf> {
        let admin = state.kubeconfig.clone()?;
        if state.chart_release.is_none() {
            return Some(admin);
        }
        Some(match agent_of {
            Some(node) => self.files.agent_kubeconfig(node),
            None => self.files.controller_kubeconfig(),
        })
    }

    /// The namespace of the controller's Lease: the release's, as the chart's.
    pub(super) fn lease_namespace(state: &LabState) -> String {
        state
            .chart_release
            .as_ref()
            .and_then(|r| r.parse::<ChartRelease>().ok())
            .map_or(LEASE_NAMESPACE.to_string(), |r| r.namespace)
    }
}
