//! `lab down`: everything the lab made goes, and nothing else.

use super::processes::stop;
use super::{CLUSTER_TIMEOUT, Lab, LabError, applied, cluster};
use neutrino_dataplane::dnsmasq::Dnsmasq;
use neutrino_dataplane::netns;

impl Lab {
    /// Removes everything the lab made: agents, DHCP servers, namespaces and
    /// the state directory. Goes on past failures and reports them all.
    pub fn down(&self) -> Result<Vec<String>, LabError> {
        let state = self.state()?;
        let prefix = Self::prefix(&state);
        let config = self.files.read_cluster().unwrap_or_default();
        let mut removed = Vec::new();
        let mut errors = Vec::new();
        // On a cluster, the objects go first, while the controller and the
        // agents still run to release their finalizers and their kernel
        // state; then the components, the nodes' records and the namespaces
        // the lab created.
        if state.kubeconfig.is_some() {
            let objects = applied(&state);
            // The tenants' namespaces the lab made go now too, with whatever
            // else was put in them, while the controller still leads; the
            // Lease's namespace goes last.
            let tenants: Vec<String> = state
                .created_namespaces
                .iter()
                .filter(|n| **n != Self::lease_namespace(&state))
                .cloned()
                .collect();
            let outcome = on_fresh_runtime(async {
                let client = self.client(&state).await?.expect("a cluster lab");
                let mut errors = cluster::delete(&client, &objects).await;
                errors.extend(cluster::delete_namespaces(&client, &tenants).await);
                if let Err(e) = cluster::wait_gone(&client, &objects, CLUSTER_TIMEOUT).await {
                    errors.push(e.to_string());
                }
                Ok::<_, LabError>(errors)
            });
            match outcome {
                Ok(failed) if failed.is_empty() => {
                    removed.push(format!("{} objects on the cluster", objects.len()));
                }
                Ok(failed) => errors.extend(failed),
                Err(e) => errors.push(e.to_string()),
            }
        }
        if let Some(pid) = self.controller_pid() {
            stop(pid);
            removed.push("the controller".into());
        }
        for node in &config.nodes {
            if self.stop_agent(&node.name) {
                removed.push(format!("agent of {}", node.name));
            }
            let (report, dhcp_errors) =
                Dnsmasq::new(self.files.node_dir(&node.name).join("dhcp")).sync(&[]);
            removed.extend(
                report
                    .stopped
                    .into_iter()
                    .map(|n| format!("dnsmasq in {n}")),
            );
            errors.extend(dhcp_errors.into_iter().map(|e| e.to_string()));
        }
        if state.kubeconfig.is_some() {
            let outcome = on_fresh_runtime(async {
                let client = self.client(&state).await?.expect("a cluster lab");
                let mut errors = cluster::unregister_nodes(&client, &config).await;
                if let Some(release) = state.chart_release.as_ref().and_then(|r| r.parse().ok()) {
                    errors.extend(cluster::delete_agent_pods(&client, &release, &config).await);
                }
                let lease: Vec<String> = state
                    .created_namespaces
                    .iter()
                    .filter(|n| **n == Self::lease_namespace(&state))
                    .cloned()
                    .collect();
                errors.extend(cluster::delete_namespaces(&client, &lease).await);
                Ok::<_, LabError>(errors)
            });
            match outcome {
                Ok(failed) => errors.extend(failed),
                Err(e) => errors.push(e.to_string()),
            }
        }
        let ours = |name: &str| {
            state.namespaces.iter().any(|n| n == name)
                || state.workloads.values().any(|w| w.namespace == name)
                || config.nodes.iter().any(|node| {
                    name.starts_with(&format!("{}-", Self::node_namespace(&prefix, &node.name)))
                })
        };
        match netns::list() {
            Ok(all) => {
                for name in all.into_iter().filter(|n| ours(n)) {
                    // Whatever still runs there (a workload's DHCP client,
                    // a server whose pid file was never written) goes too.
                    for pid in netns::processes_in(&name).unwrap_or_default() {
                        stop(pid);
                        removed.push(format!("process {pid} in {name}"));
                    }
                    match netns::delete(&name) {
                        Ok(()) => removed.push(format!("namespace {name}")),
                        Err(e) => errors.push(format!("removing namespace {name}: {e}")),
                    }
                }
            }
            Err(e) => errors.push(format!("listing namespaces: {e}")),
        }
        if errors.is_empty() {
            std::fs::remove_dir_all(&self.files.dir)
                .map_err(|e| LabError::io(format!("removing {}", self.files.dir.display()), e))?;
            Ok(removed)
        } else {
            Err(LabError::Setup(format!(
                "lab down left things behind:\n  {}",
                errors.join("\n  ")
            )))
        }
    }
}

/// Runs `future` to completion on a runtime of its own, in a thread of its
/// own, so that `down` works from synchronous code and from inside another
/// runtime (a test's guard dropped in an async test) alike.
fn on_fresh_runtime<T: Send>(future: impl std::future::Future<Output = T> + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for lab down")
                    .block_on(future)
            })
            .join()
            .expect("lab down's runtime thread")
    })
}
