//! The neutrino API: custom resources of group `neutrino.dev`, version `v1alpha1`.
//!
//! Every kind is namespaced; the namespace is the tenant. `spec` is the user's
//! alone, and everything the system decides is written to `status`, so GitOps
//! tools never see drift. Rules one object can check by itself live here as
//! schema constraints and CEL rules, so the API server refuses a bad object at
//! `kubectl apply`; rules that need other objects live in [`neutrino_core`].

#![forbid(unsafe_code)]

mod cel;
mod claim;
mod floating_ip;
mod network;
mod node_agent;
mod port;
mod router;
mod security_group;
mod shared;
mod subnet;

pub use claim::{ClaimHolder, IPClaim, IPClaimSpec, SegmentClaim, SegmentClaimSpec};
pub use floating_ip::{FloatingIP, FloatingIPSpec, FloatingIPStatus};
pub use network::{Network, NetworkSpec, NetworkStatus, NetworkType};
pub use node_agent::{IptablesBackend, NodeAgent, NodeAgentSpec, NodeAgentStatus, TunnelEndpoint};
pub use port::{AddressPair, FixedIP, Port, PortServices, PortSpec, PortStatus, ServiceEndpoint};
pub use router::{
    ExternalGateway, Router, RouterGatewayStatus, RouterInterface, RouterSpec, RouterStatus,
};
pub use security_group::{
    Direction, EtherType, SecurityGroup, SecurityGroupRule, SecurityGroupSpec, SecurityGroupStatus,
};
pub use shared::{AllocatedIP, NodeFailure, NodeRealisation, Route};
pub use subnet::{AllocationPool, Ipv6Mode, Subnet, SubnetSpec, SubnetStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group of every neutrino kind.
pub const GROUP: &str = "neutrino.dev";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";
/// The `kubectl get` category shared by every kind.
pub const CATEGORY: &str = "neutrino";

/// Every CRD, in a stable order, each with the file name it lives under in `crds/`.
pub fn crds() -> Vec<(&'static str, CustomResourceDefinition)> {
    let crds = vec![
        ("network.yaml", Network::crd()),
        ("subnet.yaml", Subnet::crd()),
        ("port.yaml", Port::crd()),
        ("router.yaml", Router::crd()),
        ("floatingip.yaml", FloatingIP::crd()),
        ("securitygroup.yaml", SecurityGroup::crd()),
        ("ipclaim.yaml", IPClaim::crd()),
        ("segmentclaim.yaml", SegmentClaim::crd()),
        ("nodeagent.yaml", NodeAgent::crd()),
    ];
    crds.into_iter()
        .map(|(file, crd)| (file, tidy(crd)))
        .collect()
}

/// Rewrites the formats schemars emits for Rust integers (`uint32`, ...)
/// into the ones the API server knows: `int32` and `int64`.
fn tidy(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    fn walk(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                if map.get("type").and_then(|t| t.as_str()) == Some("integer")
                    && !map.contains_key("jsonPath")
                {
                    let format = match map.get("format").and_then(|f| f.as_str()) {
                        Some("int32" | "uint8" | "uint16" | "int8" | "int16") => "int32",
                        _ => "int64",
                    };
                    map.insert("format".into(), format.into());
                }
                map.values_mut().for_each(walk);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(crd).expect("a CRD serializes");
    walk(&mut value);
    serde_json::from_value(value).expect("a tidied CRD deserializes")
}

/// The status types of the six kinds, which all carry conditions, the
/// generation they describe and how far the nodes have realised them.
pub trait ObjectStatus: Default {
    fn conditions(&self) -> &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition];
    fn set_conditions(
        &mut self,
        conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    );
    fn set_observed_generation(&mut self, generation: i64);
    fn nodes(&self) -> Option<&NodeRealisation>;
    fn set_nodes(&mut self, nodes: Option<NodeRealisation>);
    /// A status with only these conditions: nothing allocated shown yet.
    fn only_conditions(
        generation: i64,
        conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    ) -> Self;
}

macro_rules! object_status {
    ($($status:ty),*) => {$(
        impl ObjectStatus for $status {
            fn conditions(&self) -> &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition] {
                &self.conditions
            }

            fn set_conditions(&mut self, conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>) {
                self.conditions = conditions;
            }

            fn set_observed_generation(&mut self, generation: i64) {
                self.observed_generation = generation;
            }

            fn nodes(&self) -> Option<&NodeRealisation> {
                self.nodes.as_ref()
            }

            fn set_nodes(&mut self, nodes: Option<NodeRealisation>) {
                self.nodes = nodes;
            }

            fn only_conditions(
                generation: i64,
                conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
            ) -> Self {
                Self {
                    observed_generation: generation,
                    conditions,
                    ..Self::default()
                }
            }
        }
    )*};
}

object_status!(
    NetworkStatus,
    SubnetStatus,
    PortStatus,
    RouterStatus,
    FloatingIPStatus,
    SecurityGroupStatus
);

/// A CRD as the YAML document kept in `crds/`.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> String {
    serde_saphyr::to_string(crd).expect("a CRD serializes to YAML")
}
