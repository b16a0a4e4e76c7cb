//! Claims: how allocations are made atomic on a cluster. Each allocated
//! address or segment is held by an object whose name is the allocation
//! itself, so the API server's name uniqueness refuses a second holder.
//! Only the controller writes them.

// clippy reads the repeated `type_ = "string"` of the printer columns
// below as duplicated attributes; they are separate columns.
#![allow(clippy::duplicated_attributes)]

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The object that holds a claim.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct ClaimHolder {
    /// Port, Subnet (its DHCP server), Router (its external gateway) or FloatingIP.
    #[schemars(length(max = 63))]
    pub kind: String,
    /// The holder's namespace.
    #[schemars(length(max = 63))]
    pub namespace: String,
    /// The holder's name.
    #[schemars(length(max = 253))]
    pub name: String,
}

/// One address of one subnet, held by one object. Named
/// `<subnet>.<address>` (IPv6 as 32 hex digits) in the subnet's namespace.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[kube(
    group = "neutrino.dev",
    version = "v1alpha1",
    kind = "IPClaim",
    namespaced,
    shortname = "nipc",
    category = "neutrino",
    doc = "An address of a subnet, held by one port, router gateway, floating IP or DHCP server. The name is the address, so only one can exist; neutrino's controller creates and deletes them.",
    printcolumn(name = "Subnet", type_ = "string", json_path = ".spec.subnet"),
    printcolumn(name = "Address", type_ = "string", json_path = ".spec.address"),
    printcolumn(name = "Holder", type_ = "string", json_path = ".spec.holder.name"),
    printcolumn(name = "Kind", type_ = "string", json_path = ".spec.holder.kind"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct IPClaimSpec {
    /// The subnet, in the claim's namespace.
    #[schemars(length(max = 63))]
    pub subnet: String,
    /// The address held.
    #[schemars(length(max = 45))]
    pub address: String,
    /// Who holds it.
    pub holder: ClaimHolder,
}

/// A segmentation id (or a physical network's one flat network), held by
/// one network. Named `vxlan.<vni>`, `vlan.<physnet>.<id>` or
/// `flat.<physnet>`; cluster-scoped, since ids are shared by all tenants.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[kube(
    group = "neutrino.dev",
    version = "v1alpha1",
    kind = "SegmentClaim",
    shortname = "nsegc",
    category = "neutrino",
    doc = "A VXLAN VNI, a VLAN id on a physical network, or a physical network's flat network, held by one network. The name is the segment, so only one can exist; neutrino's controller creates and deletes them.",
    printcolumn(name = "Network", type_ = "string", json_path = ".spec.network.name"),
    printcolumn(
        name = "Namespace",
        type_ = "string",
        json_path = ".spec.network.namespace"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct SegmentClaimSpec {
    /// The network that holds the segment.
    pub network: ClaimHolder,
}
