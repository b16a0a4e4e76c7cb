//! Subnet: an address range on a network, Neutron's subnet.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::NodeRealisation;
use super::Route;
use super::cel::ip_range_ordered;

/// An IPv4 or IPv6 address range carved out of a network (Neutron's subnet).
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "neutrino.dev",
    derive = "PartialEq",
    version = "v1alpha1",
    kind = "Subnet",
    namespaced,
    status = "SubnetStatus",
    shortname = "nsub",
    category = "neutrino",
    doc = "An IPv4 or IPv6 address range on a network, Neutron's subnet. Ports take their fixed IPs from it; DHCP hands them out.",
    printcolumn(name = "Network", type_ = "string", json_path = ".spec.network"),
    printcolumn(name = "CIDR", type_ = "string", json_path = ".spec.cidr"),
    printcolumn(name = "Gateway", type_ = "string", json_path = ".status.gatewayIP"),
    printcolumn(name = "Used", type_ = "integer", json_path = ".status.usedAddresses"),
    printcolumn(name = "Free", type_ = "integer", json_path = ".status.freeAddresses", priority = 1),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 63").message("metadata.name must be at most 63 characters")
)]
#[x_kube(
    validation = Rule::new("!has(self.gatewayIP) || self.gatewayIP == '' || !isCIDR(self.cidr) || !isIP(self.gatewayIP) || cidr(self.cidr).containsIP(self.gatewayIP)").message("gatewayIP must lie inside cidr").field_path(".gatewayIP"),
    validation = Rule::new("!has(self.allocationPools) || !isCIDR(self.cidr) || self.allocationPools.all(p, !isIP(p.start) || !isIP(p.end) || (cidr(self.cidr).containsIP(p.start) && cidr(self.cidr).containsIP(p.end)))").message("every allocation pool must lie inside cidr").field_path(".allocationPools"),
    validation = Rule::new("!has(self.hostRoutes) || !isCIDR(self.cidr) || self.hostRoutes.all(r, !isIP(r.nexthop) || ip(r.nexthop).family() == cidr(self.cidr).ip().family())").message("host route nexthops must be of the subnet's IP family").field_path(".hostRoutes"),
    validation = Rule::new("!has(self.dnsNameservers) || !isCIDR(self.cidr) || self.dnsNameservers.all(d, !isIP(d) || ip(d).family() == cidr(self.cidr).ip().family())").message("dnsNameservers must be of the subnet's IP family").field_path(".dnsNameservers"),
    validation = Rule::new("!has(self.ipv6AddressMode) || !isCIDR(self.cidr) || cidr(self.cidr).ip().family() == 6").message("ipv6AddressMode is for IPv6 subnets").field_path(".ipv6AddressMode"),
    validation = Rule::new("!has(self.ipv6RAMode) || !isCIDR(self.cidr) || cidr(self.cidr).ip().family() == 6").message("ipv6RAMode is for IPv6 subnets").field_path(".ipv6RAMode"),
    validation = Rule::new("!has(self.ipv6RAMode) || (has(self.ipv6AddressMode) && self.ipv6AddressMode == self.ipv6RAMode)").message("ipv6RAMode needs the same ipv6AddressMode").field_path(".ipv6RAMode"),
    validation = Rule::new("!has(self.ipv6AddressMode) || self.ipv6AddressMode == 'dhcpv6-stateful' || !isCIDR(self.cidr) || cidr(self.cidr).prefixLength() == 64").message("SLAAC (ipv6AddressMode slaac or dhcpv6-stateless) needs a /64 cidr").field_path(".ipv6AddressMode")
)]
#[serde(rename_all = "camelCase")]
pub struct SubnetSpec {
    /// The network this subnet belongs to, in the same namespace. Immutable.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("network is immutable"))]
    pub network: String,

    /// The address range in CIDR notation, IPv4 (`10.10.0.0/24`) or IPv6
    /// (`2001:db8::/64`), with no host bits set. Immutable.
    #[schemars(length(max = 49))]
    #[x_kube(
        validation = Rule::new("isCIDR(self)").message("cidr must be a CIDR such as 10.10.0.0/24"),
        validation = Rule::new("!isCIDR(self) || cidr(self) == cidr(self).masked()").message("cidr must have no host bits set, for example 10.10.0.0/24 rather than 10.10.0.5/24"),
        validation = Rule::new("!isCIDR(self) || (cidr(self).ip().family() == 4 ? cidr(self).prefixLength() <= 30 : cidr(self).prefixLength() <= 126)").message("cidr is too small: at most /30 for IPv4 and /126 for IPv6"),
        validation = Rule::new("self == oldSelf").message("cidr is immutable")
    )]
    pub cidr: String,

    /// The gateway address. The first host of the CIDR when omitted; the empty
    /// string for a subnet without a gateway.
    #[serde(rename = "gatewayIP", default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 45))]
    #[x_kube(validation = Rule::new("self == '' || isIP(self)").message("gatewayIP must be an IP address or empty"))]
    pub gateway_ip: Option<String>,

    /// Ranges ports take their addresses from. The whole CIDR less the network,
    /// broadcast and gateway addresses when omitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["start".into()]))]
    pub allocation_pools: Vec<AllocationPool>,

    /// DNS servers handed out by DHCP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(max = 45)))]
    #[x_kube(
        merge_strategy = ListMerge::Set,
        validation = Rule::new("self.all(d, isIP(d))").message("dnsNameservers must be IP addresses")
    )]
    pub dns_nameservers: Vec<String>,

    /// Routes handed out by DHCP (option 121 for IPv4).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["destination".into()]))]
    pub host_routes: Vec<Route>,

    /// Whether the nodes' DHCP servers answer for ports on this subnet.
    #[serde(rename = "enableDHCP", default = "enabled")]
    pub enable_dhcp: bool,

    /// How ports on an IPv6 subnet get their addresses, as in Neutron:
    /// `slaac` (from router advertisements: the EUI-64 of the port's MAC),
    /// `dhcpv6-stateless` (the same, with DNS from DHCPv6) or
    /// `dhcpv6-stateful` (the allocated address, from DHCPv6). Unset, the
    /// allocated address is the port's to configure.
    #[serde(
        rename = "ipv6AddressMode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_address_mode: Option<Ipv6Mode>,

    /// Whether neutrino sends router advertisements for an IPv6 subnet, and
    /// with which flags: the same mode as `ipv6AddressMode`, which it needs.
    /// The nodes' DHCP servers advertise the prefix (as no default router)
    /// and the routers with a leg on the subnet the default route. Unset,
    /// something outside neutrino advertises.
    #[serde(
        rename = "ipv6RAMode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_ra_mode: Option<Ipv6Mode>,
}

/// How IPv6 addresses are configured (Neutron's `ipv6_address_mode` and
/// `ipv6_ra_mode`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum Ipv6Mode {
    /// Stateless address autoconfiguration from the advertised prefix.
    #[serde(rename = "slaac")]
    Slaac,
    /// SLAAC addresses; DNS and other options from DHCPv6.
    #[serde(rename = "dhcpv6-stateless")]
    Dhcpv6Stateless,
    /// Addresses and options from DHCPv6.
    #[serde(rename = "dhcpv6-stateful")]
    Dhcpv6Stateful,
}

impl Ipv6Mode {
    /// Whether ports take the EUI-64 of their MAC rather than an allocated
    /// address.
    pub fn is_autoconfigured(self) -> bool {
        matches!(self, Self::Slaac | Self::Dhcpv6Stateless)
    }
}

impl std::fmt::Display for Ipv6Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Slaac => "slaac",
            Self::Dhcpv6Stateless => "dhcpv6-stateless",
            Self::Dhcpv6Stateful => "dhcpv6-stateful",
        })
    }
}

fn enabled() -> bool {
    true
}

/// An inclusive range of addresses inside a subnet's CIDR.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new(ip_range_ordered("self.start", "self.end")).message("start must not be above end"))]
#[x_kube(validation = Rule::new("!isIP(self.start) || !isIP(self.end) || ip(self.start).family() == ip(self.end).family()").message("start and end must be of the same IP family").field_path(".end"))]
pub struct AllocationPool {
    /// First address of the range.
    #[schemars(length(max = 45))]
    #[x_kube(validation = Rule::new("isIP(self)").message("start must be an IP address"))]
    pub start: String,
    /// Last address of the range.
    #[schemars(length(max = 45))]
    #[x_kube(validation = Rule::new("isIP(self)").message("end must be an IP address"))]
    pub end: String,
}

/// What the system decided for a subnet.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubnetStatus {
    /// The generation of the spec this status describes.
    #[serde(default)]
    pub observed_generation: i64,
    /// The gateway address in effect, if any.
    #[serde(rename = "gatewayIP", default, skip_serializing_if = "Option::is_none")]
    pub gateway_ip: Option<String>,
    /// The address the nodes' DHCP servers answer from, when DHCP is on.
    #[serde(rename = "dhcpIP", default, skip_serializing_if = "Option::is_none")]
    pub dhcp_ip: Option<String>,
    /// Addresses taken by ports, routers, floating IPs and DHCP.
    #[serde(default)]
    pub used_addresses: i64,
    /// Addresses left in the allocation pools.
    #[serde(default)]
    pub free_addresses: i64,
    /// How many nodes have realised it, and which have not and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodeRealisation>,
    /// Ready, with a reason and message naming the field and the conflict when not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
