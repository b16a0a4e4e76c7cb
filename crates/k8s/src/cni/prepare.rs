//! Ports made when a pod is bound to this node, before its sandbox is.
//!
//! Between the scheduler's binding and the kubelet's ADD the runtime makes
//! the sandbox (a few hundred milliseconds on the lab's nodes). A pod that
//! selects neutrino networks through Multus's annotation gets its Ports in
//! that time — the very Ports its ADD would make, so the controller
//! allocates them and this agent plugs them while the sandbox is made, and
//! the ADD finds them ready, as it finds a sandbox made again. Allocation
//! stays with the controller and its claims on the API server; what moves
//! earlier is only the moment the Port is asked for.
//!
//! A pod that names its Port (a VM's), runs on the host's network, or has
//! its sandbox already, is left to its ADD; so is one whose definition
//! cannot be read. A Port made here is the pod's as an ADD's is: owned by
//! it, gone with it.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::core::v1::PodStatus;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedReceiver;

use super::{FIELD_MANAGER, Service};
use crate::execute::bounded;
use neutrino_api::Port;
use neutrino_cni::selection::{self, NETWORKS_ANNOTATION, Selection};
use neutrino_core::Key;
use neutrino_core::scope::Source;

/// Multus's NetworkAttachmentDefinition.
fn definitions() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition"),
        "network-attachment-definitions",
    )
}

/// Whether `pod` is about to have its sandbox made on its node: pending,
/// not going away, not on the host's network, and not yet ready to start
/// its containers (the kubelet's condition once the sandbox and its
/// network are up).
pub fn awaits_sandbox(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let pending = status
        .and_then(|s| s.phase.as_deref())
        .is_none_or(|p| p == "Pending");
    let sandboxed = status
        .and_then(|s: &PodStatus| s.conditions.as_ref())
        .is_some_and(|all| {
            all.iter()
                .any(|c| c.type_ == "PodReadyToStartContainers" && c.status == "True")
        });
    pending
        && !sandboxed
        && pod.metadata.deletion_timestamp.is_none()
        && spec.and_then(|s| s.host_network) != Some(true)
        && pod.annotations().contains_key(NETWORKS_ANNOTATION)
}

impl Service {
    /// Prepares each pod the node's watch brings, once per pod.
    pub(super) async fn prepare_pods(self: Arc<Self>, mut pods: UnboundedReceiver<Pod>) {
        let mut seen: HashSet<String> = HashSet::new();
        while let Some(pod) = pods.recv().await {
            let Some(uid) = pod.uid() else { continue };
            if !awaits_sandbox(&pod) || !seen.insert(uid) {
                continue;
            }
            // Forget the pods the watch no longer has.
            let watched = self.pods.state();
            if seen.len() > 2 * watched.len() + 64 {
                let present: HashSet<String> = watched.iter().filter_map(|p| p.uid()).collect();
                seen.retain(|uid| present.contains(uid));
            }
            let service = self.clone();
            tokio::spawn(async move { service.prepare(&pod).await });
        }
    }

    async fn prepare(&self, pod: &Pod) {
        let namespace = pod.namespace().unwrap_or_default();
        let text = &pod.annotations()[NETWORKS_ANNOTATION];
        let selected = match selection::selections(text, &namespace) {
            Ok(selected) => selected,
            // The ADD says it to the runtime, which shows it on the pod.
            Err(e) => {
                tracing::debug!(pod = %pod.name_any(), error = %e, "not prepared");
                return;
            }
        };
        for chosen in &selected {
            if let Err(e) = self.prepare_port(pod, chosen).await {
                tracing::warn!(
                    pod = %format!("{namespace}/{}", pod.name_any()),
                    network = %chosen.name, error = %e,
                    "cannot make the pod's Port before its sandbox; its ADD will"
                );
            }
        }
    }

    /// Makes the Port the ADD for `chosen` would make, unless the network
    /// is not neutrino's or the pod names its Port.
    async fn prepare_port(&self, pod: &Pod, chosen: &Selection) -> Result<(), String> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &chosen.namespace, &definitions());
        let Some(definition) = bounded(api.get_opt(&chosen.name))
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(());
        };
        let config = definition.data["spec"]["config"].as_str().unwrap_or("{}");
        let Some(conf) = selection::delegate_conf(config, chosen) else {
            return Ok(());
        };
        if super::attach::named_port(pod, &conf, &chosen.interface)
            .map_err(|e| e.to_string())?
            .is_some()
        {
            return Ok(());
        }
        // Made before any sandbox: the annotation names no container.
        let wanted = self
            .wanted_port(pod, "", &chosen.interface, &conf)
            .map_err(|e| e.to_string())?;
        let namespace = pod.namespace().unwrap_or_default();
        let name = wanted.name_any();
        if (self.stores)
            .shared::<Port>(&Key::new(&namespace, &name))
            .is_some()
        {
            return Ok(());
        }
        let ports: Api<Port> = Api::namespaced(self.client.clone(), &namespace);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        bounded(ports.patch(&name, &params, &Patch::Apply(&wanted)))
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(port = %format!("{namespace}/{name}"), "Port made before its pod's sandbox");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec};
    use kube::api::ObjectMeta;
    use std::collections::BTreeMap;

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                annotations: Some(BTreeMap::from([(
                    NETWORKS_ANNOTATION.to_string(),
                    "blue".to_string(),
                )])),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-1".into()),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                ..PodStatus::default()
            }),
        }
    }

    #[test]
    fn only_a_pending_pod_without_its_sandbox_is_prepared() {
        assert!(awaits_sandbox(&pod()));
        let mut fresh = pod();
        fresh.status = None;
        assert!(awaits_sandbox(&fresh), "a pod no kubelet has reported on");

        let mut running = pod();
        running.status.as_mut().unwrap().phase = Some("Running".into());
        let mut sandboxed = pod();
        sandboxed.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
            type_: "PodReadyToStartContainers".into(),
            status: "True".into(),
            ..PodCondition::default()
        }]);
        let mut host = pod();
        host.spec.as_mut().unwrap().host_network = Some(true);
        let mut going = pod();
        going.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        let mut plain = pod();
        plain.metadata.annotations = None;
        for (what, pod) in [
            ("running", running),
            ("sandboxed", sandboxed),
            ("on the host's network", host),
            ("being deleted", going),
            ("selecting no network", plain),
        ] {
            assert!(!awaits_sandbox(&pod), "{what}");
        }
    }
}
