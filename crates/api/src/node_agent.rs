//! NodeAgent: one node's agent as it reports itself, like Neutron's agent
//! list. The agent writes it; the controller reads the nodes from it.

// The printer columns below repeat `type_ = "string"`; clippy takes them for
// duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A node's agent: where its tunnel ends, which physical networks it reaches
/// and whether routers may run on it. Named after the node; cluster-scoped.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "neutrino.dev",
    version = "v1alpha1",
    kind = "NodeAgent",
    status = "NodeAgentStatus",
    shortname = "nagent",
    category = "neutrino",
    doc = "A node's neutrino agent, as it reports itself: tunnel endpoint, physical networks, version, heartbeat and the result of its last apply.",
    printcolumn(name = "Tunnel IP", type_ = "string", json_path = ".spec.tunnelIP"),
    printcolumn(
        name = "Chosen By",
        type_ = "string",
        json_path = ".spec.tunnelEndpoint.rule"
    ),
    printcolumn(name = "Gateway", type_ = "boolean", json_path = ".spec.gateway"),
    printcolumn(
        name = "Iptables",
        type_ = "string",
        json_path = ".status.iptables.backend"
    ),
    printcolumn(name = "Version", type_ = "string", json_path = ".status.version"),
    printcolumn(name = "Heartbeat", type_ = "date", json_path = ".status.heartbeat"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct NodeAgentSpec {
    /// The node's VXLAN tunnel endpoint.
    #[serde(rename = "tunnelIP")]
    #[schemars(length(max = 45))]
    #[x_kube(validation = Rule::new("isIP(self)").message("tunnelIP must be an IP address"))]
    pub tunnel_ip: String,
    /// How the agent chose `tunnelIP`, and the interface it is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_endpoint: Option<TunnelEndpoint>,
    /// Physical network name → the node's interface on it.
    #[serde(default)]
    pub physical_interfaces: BTreeMap<String, String>,
    /// Whether routers may be scheduled onto this node.
    #[serde(default)]
    pub gateway: bool,
}

/// The chosen endpoint and why, as the agent reports it on its NodeAgent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TunnelEndpoint {
    /// The rule, as written: default-route, address=…, interface=…, cidr=…, can-reach=….
    #[schemars(length(max = 253))]
    pub rule: String,
    /// The interface the address is on.
    #[schemars(length(max = 15))]
    pub interface: String,
}

/// The iptables backend an agent chose.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IptablesBackend {
    /// nft or legacy.
    #[schemars(length(max = 16))]
    pub backend: String,
    /// Why: kubelet's marker chain, or which backend held more of the host's rules.
    #[schemars(length(max = 253))]
    pub reason: String,
}

/// What the agent last did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeAgentStatus {
    /// The agent's version.
    #[serde(default)]
    pub version: String,
    /// When the agent last reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<Time>,
    /// The iptables backend the agent writes through, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables: Option<IptablesBackend>,
    /// Kernel writes of the last apply.
    #[serde(default)]
    pub last_apply_writes: i64,
    /// What the last apply could not do, each naming the object and the operation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_apply_errors: Vec<String>,
    /// A digest of the objects, at their generations, that the last apply
    /// realised in full; the controller counts this node as having realised
    /// an object only when its own digest of what the node should hold is
    /// the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realised: Option<String>,
    /// Ready when the last apply realised the whole plan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
