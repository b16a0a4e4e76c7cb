//! The neutrino API: custom resources of group `neutrino.dev`, version `v1alpha1`.
//!
//! Every kind is namespaced; the namespace is the tenant. `spec` is the user's
//! alone, and everything the system decides is written to `status`, so GitOps
//! tools never see drift. Rules one object can check by itself live here as
//! schema constraints and CEL rules, so the API server refuses a bad object at
//! `kubectl apply`; rules that need other objects live in [`crate::core`].

mod cel;
mod floating_ip;
mod network;
mod port;
mod router;
mod security_group;
mod shared;
mod subnet;

pub use floating_ip::{FloatingIP, FloatingIPSpec, FloatingIPStatus};
pub use network::{Network, NetworkSpec, NetworkStatus, NetworkType};
pub use port::{AddressPair, FixedIP, Port, PortSpec, PortStatus};
pub use router::{
    ExternalGateway, Router, RouterGatewayStatus, RouterInterface, RouterSpec, RouterStatus,
};
pub use security_group::{
    Direction, EtherType, SecurityGroup, SecurityGroupRule, SecurityGroupSpec, SecurityGroupStatus,
};
pub use shared::{AllocatedIP, Route};
pub use subnet::{AllocationPool, Subnet, SubnetSpec, SubnetStatus};

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
    vec![
        ("network.yaml", Network::crd()),
        ("subnet.yaml", Subnet::crd()),
        ("port.yaml", Port::crd()),
        ("router.yaml", Router::crd()),
        ("floatingip.yaml", FloatingIP::crd()),
        ("securitygroup.yaml", SecurityGroup::crd()),
    ]
}
