//! Network: an isolated L2 segment, Neutron's network.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::NodeRealisation;

/// How a network's frames travel between nodes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum NetworkType {
    /// Confined to each node: no uplink.
    Local,
    /// Untagged on a physical network.
    Flat,
    /// 802.1Q-tagged on a physical network.
    Vlan,
    /// VXLAN tunnels between the nodes' tunnel endpoints.
    Vxlan,
}

impl NetworkType {
    /// Whether the type rides on a configured physical network.
    pub fn needs_physical_network(self) -> bool {
        matches!(self, Self::Flat | Self::Vlan)
    }
}

impl std::fmt::Display for NetworkType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Local => "local",
            Self::Flat => "flat",
            Self::Vlan => "vlan",
            Self::Vxlan => "vxlan",
        })
    }
}

/// An isolated layer-2 network (Neutron's network).
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "neutrino.dev",
    derive = "PartialEq",
    version = "v1alpha1",
    kind = "Network",
    namespaced,
    status = "NetworkStatus",
    shortname = "nnet",
    category = "neutrino",
    doc = "An isolated layer-2 network, Neutron's network. Subnets carve addresses out of it and ports attach to it.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Segment", type_ = "integer", json_path = ".status.segmentationID"),
    printcolumn(name = "MTU", type_ = "integer", json_path = ".status.mtu"),
    printcolumn(name = "External", type_ = "boolean", json_path = ".spec.external"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 63").message("metadata.name must be at most 63 characters")
)]
#[x_kube(
    validation = Rule::new("!has(self.segmentationID) || self.type in ['vlan', 'vxlan']").message("segmentationID is only allowed for vlan and vxlan networks").field_path(".segmentationID"),
    validation = Rule::new("!has(self.segmentationID) || self.type != 'vlan' || self.segmentationID <= 4094").message("segmentationID of a vlan network must be between 1 and 4094").field_path(".segmentationID"),
    validation = Rule::new("self.type in ['flat', 'vlan'] ? has(self.physicalNetwork) : !has(self.physicalNetwork)").message("physicalNetwork is required for flat and vlan networks and not allowed for local and vxlan networks").field_path(".physicalNetwork"),
    validation = Rule::new("has(self.segmentationID) == has(oldSelf.segmentationID)").message("segmentationID cannot be added or removed after creation").field_path(".segmentationID"),
    validation = Rule::new("has(self.physicalNetwork) == has(oldSelf.physicalNetwork)").message("physicalNetwork cannot be added or removed after creation").field_path(".physicalNetwork")
)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    /// How frames travel between nodes: local, flat, vlan or vxlan. Immutable.
    #[serde(rename = "type")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("type is immutable"))]
    pub network_type: NetworkType,

    /// VXLAN VNI (1-16777215) or VLAN id (1-4094). Allocated from the configured
    /// range when omitted; the allocated value is in status. Immutable.
    #[serde(
        rename = "segmentationID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1, max = 16777215))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("segmentationID is immutable"))]
    pub segmentation_id: Option<u32>,

    /// The physical network a flat or vlan network rides on, as named in the
    /// nodes' physical network mappings. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("physicalNetwork is immutable"))]
    pub physical_network: Option<String>,

    /// MTU of the network. Derived from the underlay MTU and the encapsulation
    /// overhead when omitted; the value in effect is in status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 68, max = 9216))]
    pub mtu: Option<u32>,

    /// Whether routers may use this network as their external gateway and
    /// floating IPs may be taken from it. Tenants of other namespaces may refer
    /// to an external network as `namespace/name`.
    #[serde(default)]
    pub external: bool,
}

/// What the system decided for a network.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkStatus {
    /// The generation of the spec this status describes.
    #[serde(default)]
    pub observed_generation: i64,
    /// The VNI or VLAN id in effect.
    #[serde(
        rename = "segmentationID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub segmentation_id: Option<u32>,
    /// The MTU in effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// How many nodes have realised it, and which have not and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodeRealisation>,
    /// Ready, with a reason and message naming the field and the conflict when not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
