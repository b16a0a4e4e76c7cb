//! Types used by more than one kind.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A static route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// Destination CIDR, for example `192.168.50.0/24`.
    #[schemars(length(max = 49))]
    #[x_kube(validation = Rule::new("isCIDR(self)").message("destination must be a CIDR such as 192.168.50.0/24"))]
    pub destination: String,
    /// Next hop address; it must be reachable on one of the attached subnets.
    #[serde(rename = "nexthop")]
    #[schemars(length(max = 45))]
    #[x_kube(validation = Rule::new("isIP(self)").message("nexthop must be an IP address"))]
    pub nexthop: String,
}

/// An address the system allocated, with the subnet it belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllocatedIP {
    /// The subnet the address belongs to.
    pub subnet: String,
    /// The address.
    pub ip_address: String,
}

/// How far the nodes that must realise an object have come.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeRealisation {
    /// Nodes whose share of the cluster includes the object.
    pub desired: i32,
    /// Of those, nodes whose agent's last apply realised everything.
    pub ready: i32,
    /// Nodes that have not, with what their agent reported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<NodeFailure>,
}

/// One node that has not realised an object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeFailure {
    /// The node.
    pub node: String,
    /// Why, as its agent reported it (or that it has not reported).
    pub message: String,
}
