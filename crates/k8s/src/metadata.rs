//! What the agent's metadata service reads on a cluster: the objects from
//! the agent's watch caches, and a port's Secret from the API server when
//! it is asked for (agents watch no Secrets).

use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use super::stores::Stores;
use neutrino_core::metadata::{self, Instance, Listener, Refusal};
use neutrino_dataplane::metadata::{Directory, SecretRead};

pub struct ClusterDirectory {
    pub stores: Arc<Stores>,
    pub client: Client,
}

impl Directory for ClusterDirectory {
    fn caller(&self, listener: &Listener, address: IpAddr) -> Result<Instance, Refusal> {
        metadata::caller(&*self.stores, listener, address)
    }

    fn secret<'a>(&'a self, namespace: &'a str, name: &'a str) -> SecretRead<'a> {
        Box::pin(async move {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
            let secret = api.get_opt(name).await.map_err(|e| e.to_string())?;
            Ok(secret.as_ref().map(metadata::secret_data))
        })
    }
}
