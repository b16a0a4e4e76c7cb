//! The controller's half of a Port's takeover (see
//! [`neutrino_core::takeover`]): for each Port an agent asks for, it reads
//! the pods the request and the Port name, decides, and either binds the
//! Port to the asking node for the asking pod or says why not on the Port.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::execute::{FIELD_MANAGER, Failure, bounded};
use super::stores::Stores;
use neutrino_api::Port;
use neutrino_core::attachment::{ATTACHMENT_ANNOTATION, HOLDER_ANNOTATION};
use neutrino_core::takeover::{
    REFUSED_ANNOTATION, Refusal, TAKEOVER_ANNOTATION, Takeover, decide, holder_of,
};

/// Answers every request the cache shows. Returns whether any is left to
/// answer again (the API server did not take a read or a write).
pub async fn answer(client: &Client, stores: &Stores) -> bool {
    let mut again = false;
    for port in stores.all::<Port>() {
        let Some(value) = port.annotations().get(TAKEOVER_ANNOTATION) else {
            continue;
        };
        if let Err(error) = answer_one(client, &port, value).await {
            tracing::warn!(
                port = %format!("{}/{}", port.namespace().unwrap_or_default(), port.name_any()),
                %error,
                "could not answer a takeover request"
            );
            again = true;
        }
    }
    again
}

async fn answer_one(client: &Client, port: &Port, value: &str) -> Result<(), Failure> {
    let namespace = port.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let verdict = match Takeover::parse(value) {
        None => Err(Refusal::Malformed(value.to_string())),
        Some(request) => {
            let asking = bounded(pods.get_opt(&request.pod.pod)).await?;
            let holder = match holder_of(port).filter(|h| *h != request.pod) {
                Some(holder) => bounded(pods.get_opt(&holder.pod)).await?,
                None => None,
            };
            decide(port, &request, asking.as_ref(), holder.as_ref()).map(|()| request)
        }
    };
    // Conditional on the Port as read: a request written again in between
    // is answered on its own.
    let body = match &verdict {
        Ok(request) => json!({
            "metadata": {
                "resourceVersion": port.resource_version(),
                "annotations": {
                    TAKEOVER_ANNOTATION: null,
                    REFUSED_ANNOTATION: null,
                    HOLDER_ANNOTATION: request.pod.to_string(),
                    ATTACHMENT_ANNOTATION: request.attachment(),
                },
            },
            "spec": {"nodeName": request.node},
        }),
        Err(refusal) => json!({
            "metadata": {
                "resourceVersion": port.resource_version(),
                "annotations": {
                    TAKEOVER_ANNOTATION: null,
                    REFUSED_ANNOTATION: format!("{value}: {refusal}"),
                },
            },
        }),
    };
    let ports: Api<Port> = Api::namespaced(client.clone(), &namespace);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    match bounded(ports.patch(&port.name_any(), &params, &Patch::Merge(&body))).await {
        Ok(_) => {}
        // Changed since it was read: the next round reads it again.
        Err(Failure::Api(kube::Error::Api(e))) if e.code == 409 => {}
        Err(e) => return Err(e),
    }
    match verdict {
        Ok(request) => tracing::info!(
            port = %format!("{namespace}/{}", port.name_any()),
            node = %request.node, pod = %request.pod.pod,
            "bound a Port to the node its new holder runs on"
        ),
        Err(refusal) => tracing::warn!(
            port = %format!("{namespace}/{}", port.name_any()),
            request = %value, %refusal,
            "refused a takeover"
        ),
    }
    Ok(())
}
