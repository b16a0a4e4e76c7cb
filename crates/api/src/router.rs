//! Router: routes between subnets and to an external network, Neutron's router.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::NodeRealisation;
use super::Route;

/// Routes between its subnets and, through an external gateway with SNAT,
/// to the outside (Neutron's router). Scheduled onto one gateway node.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "neutrino.dev",
    derive = "PartialEq",
    version = "v1alpha1",
    kind = "Router",
    namespaced,
    status = "RouterStatus",
    shortname = "nrtr",
    category = "neutrino",
    doc = "Routes between subnets and, through an external gateway with SNAT, to the outside, Neutron's router. Runs in a network namespace on one gateway node.",
    printcolumn(name = "Gateway", type_ = "string", json_path = ".status.externalGateway.ipAddress"),
    printcolumn(name = "Node", type_ = "string", json_path = ".status.node"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 63").message("metadata.name must be at most 63 characters")
)]
#[serde(rename_all = "camelCase")]
pub struct RouterSpec {
    /// Subnets the router is attached to; it takes each subnet's gateway IP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["subnet".into()]))]
    pub interfaces: Vec<RouterInterface>,

    /// The external network the router reaches the outside through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_gateway: Option<ExternalGateway>,

    /// Static routes; each nexthop must lie on an attached subnet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["destination".into(), "nexthop".into()]))]
    pub routes: Vec<Route>,
}

/// An attachment of a router to a subnet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouterInterface {
    /// The subnet, in the same namespace.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub subnet: String,
}

/// A router's way out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalGateway {
    /// An external network: `name` in the same namespace or `namespace/name`.
    #[schemars(
        length(min = 1, max = 127),
        regex(pattern = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub network: String,
    /// Whether traffic from the router's subnets leaves with the gateway's
    /// address (source NAT).
    #[serde(rename = "enableSNAT", default = "enabled")]
    pub enable_snat: bool,
    /// The gateway address on the external network; allocated when omitted.
    #[serde(rename = "ipAddress", default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 45))]
    #[x_kube(validation = Rule::new("isIP(self)").message("ipAddress must be an IP address"))]
    pub ip_address: Option<String>,
}

fn enabled() -> bool {
    true
}

/// What the system decided for a router.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouterStatus {
    /// The generation of the spec this status describes.
    #[serde(default)]
    pub observed_generation: i64,
    /// The gateway node the router runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The external gateway's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_gateway: Option<RouterGatewayStatus>,
    /// How many nodes have realised it, and which have not and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodeRealisation>,
    /// Ready, with a reason and message naming the field and the conflict when not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The external gateway in effect.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouterGatewayStatus {
    /// The external network, as `namespace/name`.
    pub network: String,
    /// The gateway's address on it.
    pub ip_address: String,
}
