//! Port: an attachment point on a network, Neutron's port.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::AllocatedIP;
use super::NodeRealisation;

/// A virtual NIC on a network (Neutron's port): a VM's or a pod's interface.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "neutrino.dev",
    derive = "PartialEq",
    version = "v1alpha1",
    kind = "Port",
    namespaced,
    status = "PortStatus",
    shortname = "nport",
    category = "neutrino",
    doc = "A virtual NIC on a network, Neutron's port: its addresses, MAC, security groups and the node it is bound to.",
    printcolumn(name = "Network", type_ = "string", json_path = ".spec.network"),
    printcolumn(name = "IPs", type_ = "string", json_path = ".status.fixedIPs[*].ipAddress"),
    printcolumn(name = "MAC", type_ = "string", json_path = ".status.macAddress"),
    printcolumn(name = "Node", type_ = "string", json_path = ".spec.nodeName"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 63").message("metadata.name must be at most 63 characters")
)]
#[x_kube(
    validation = Rule::new("self.portSecurity || !has(self.securityGroups) || size(self.securityGroups) == 0").message("securityGroups must be empty when portSecurity is false").field_path(".securityGroups"),
    validation = Rule::new("self.portSecurity || !has(self.allowedAddressPairs) || size(self.allowedAddressPairs) == 0").message("allowedAddressPairs must be empty when portSecurity is false").field_path(".allowedAddressPairs")
)]
#[serde(rename_all = "camelCase")]
pub struct PortSpec {
    /// The network the port attaches to, in the same namespace. Immutable.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("network is immutable"))]
    pub network: String,

    /// Addresses requested on the network's subnets. With none, the port
    /// takes one address from each of its network's subnets, as in Neutron.
    #[serde(rename = "fixedIPs", default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub fixed_ips: Vec<FixedIP>,

    /// The port's MAC address. A stable, locally administered one is
    /// allocated when omitted; the address in effect is in status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 17),
        regex(pattern = r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
    )]
    #[x_kube(validation = Rule::new("self.substring(1, 2).lowerAscii() in ['0', '2', '4', '6', '8', 'a', 'c', 'e']").message("macAddress must be a unicast address (the lowest bit of the first octet clear)"))]
    pub mac_address: Option<String>,

    /// Security groups of the port's namespace, by name (never another
    /// namespace's). Empty: the namespace's `default` group, as in Neutron.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        inner(
            length(min = 1, max = 63),
            regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
        )
    )]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub security_groups: Vec<String>,

    /// Whether security groups and anti-spoofing apply. When false, no group
    /// may be set and any source MAC and IP is let through.
    #[serde(default = "enabled")]
    pub port_security: bool,

    /// Other addresses (and optionally MACs) the port may send from, for
    /// VRRP, load balancers and the like.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["ipAddress".into()]))]
    pub allowed_address_pairs: Vec<AddressPair>,

    /// The node the port is bound to. An unbound port holds its addresses
    /// but is realised on no node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub node_name: Option<String>,

    /// The name the workload behind the port goes by, in its DHCP lease
    /// and from the metadata service. The port's name when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub hostname: Option<String>,

    /// A Secret in the port's namespace whose `userData` and
    /// `sshAuthorizedKeys` the metadata service hands to the workload
    /// behind the port, and to nothing else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub metadata_secret_name: Option<String>,
}

fn enabled() -> bool {
    true
}

/// One requested address: a subnet, and optionally the address itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FixedIP {
    /// The subnet, in the same namespace, on the port's network.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub subnet: String,
    /// The address; allocated from the subnet's pools when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 45))]
    #[x_kube(validation = Rule::new("isIP(self)").message("ipAddress must be an IP address"))]
    pub ip_address: Option<String>,
}

/// An extra address the port may send from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddressPair {
    /// An address or CIDR, for example `10.10.0.100/32` or `10.10.0.100`.
    #[schemars(length(max = 49))]
    #[x_kube(validation = Rule::new("isIP(self) || isCIDR(self)").message("ipAddress must be an IP address or a CIDR"))]
    pub ip_address: String,
    /// The MAC that goes with it; the port's own when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 17),
        regex(pattern = r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
    )]
    pub mac_address: Option<String>,
}

/// What the system decided for a port.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortStatus {
    /// The generation of the spec this status describes.
    #[serde(default)]
    pub observed_generation: i64,
    /// The addresses the port holds.
    #[serde(rename = "fixedIPs", default, skip_serializing_if = "Vec::is_empty")]
    pub fixed_ips: Vec<AllocatedIP>,
    /// The MAC address in effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    /// The MTU of the port's network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// How many nodes have realised it, and which have not and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodeRealisation>,
    /// What serves the port, once the nodes concerned have realised it:
    /// the DHCP servers that answer it and where the metadata service at
    /// 169.254.169.254 does. Absent while the port is bound to no node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<PortServices>,
    /// Ready, with a reason and message naming the field and the conflict when not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The services a port is served, each where it answers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortServices {
    /// The DHCP servers that hand the port its addresses: one per subnet
    /// with DHCP on, on the port's node. Empty while the node has not
    /// realised the port, or when no subnet of the port serves DHCP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dhcp: Vec<ServiceEndpoint>,
    /// Where the metadata service answers the port: its node's DHCP
    /// namespaces (through the route DHCP hands out), once its node has
    /// realised the port, and the Ready routers on its network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<ServiceEndpoint>,
}

/// One place a service answers a port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEndpoint {
    /// `Subnet` (its DHCP namespace on the port's node) or `Router`.
    pub kind: String,
    /// The subnet or router, in the port's namespace.
    pub name: String,
    /// The node it answers on.
    pub node: String,
    /// The address the port reaches it through: the DHCP server's, or the
    /// router's on the port's subnet.
    pub address: String,
}
