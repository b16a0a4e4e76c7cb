//! SecurityGroup: stateful filtering rules for ports, Neutron's security group.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::NodeRealisation;

/// A set of stateful allow rules applied to the ports that name it (Neutron's
/// security group). A port with no group gets its namespace's `default` group:
/// all egress, and ingress only from members of `default`.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "neutrino.dev",
    derive = "PartialEq",
    version = "v1alpha1",
    kind = "SecurityGroup",
    namespaced,
    status = "SecurityGroupStatus",
    shortname = "nsg",
    category = "neutrino",
    doc = "Stateful allow rules for the ports that name it, Neutron's security group. Traffic no rule allows is dropped; replies to allowed traffic pass.",
    printcolumn(name = "Rules", type_ = "integer", json_path = ".status.ruleCount"),
    printcolumn(name = "Ports", type_ = "integer", json_path = ".status.portCount"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 63").message("metadata.name must be at most 63 characters")
)]
#[serde(rename_all = "camelCase")]
pub struct SecurityGroupSpec {
    /// The allow rules. They have no natural key, so the list is replaced as a whole.
    #[serde(default)]
    #[schemars(length(max = 256))]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub rules: Vec<SecurityGroupRule>,
}

/// Which way a rule's traffic flows, seen from the port.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Traffic arriving at the port.
    Ingress,
    /// Traffic leaving the port.
    Egress,
}

/// The IP family a rule matches.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum EtherType {
    /// IPv4.
    IPv4,
    /// IPv6.
    IPv6,
}

/// One stateful allow rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!(has(self.remoteIPPrefix) && has(self.remoteGroup))").message("remoteIPPrefix and remoteGroup are mutually exclusive").field_path(".remoteGroup"),
    validation = Rule::new("!has(self.portRangeMin) || !has(self.portRangeMax) || self.portRangeMin <= self.portRangeMax || (has(self.protocol) && self.protocol in ['icmp', 'icmpv6', 'ipv6-icmp', '1', '58'])").message("portRangeMin must not be above portRangeMax").field_path(".portRangeMin"),
    validation = Rule::new("(!has(self.portRangeMin) && !has(self.portRangeMax)) || (has(self.protocol) && self.protocol in ['tcp', 'udp', 'sctp', 'icmp', 'icmpv6', 'ipv6-icmp', '6', '17', '132', '1', '58'])").message("a port range needs protocol tcp, udp or sctp (or icmp, where portRangeMin is the type and portRangeMax the code)").field_path(".portRangeMin"),
    validation = Rule::new("!has(self.protocol) || !(self.protocol in ['icmp', '1']) || self.ethertype == 'IPv4'").message("protocol icmp needs ethertype IPv4; use icmpv6 for IPv6").field_path(".protocol"),
    validation = Rule::new("!has(self.protocol) || !(self.protocol in ['icmpv6', 'ipv6-icmp', '58']) || self.ethertype == 'IPv6'").message("protocol icmpv6 needs ethertype IPv6").field_path(".protocol"),
    validation = Rule::new("!has(self.remoteIPPrefix) || !isCIDR(self.remoteIPPrefix) || cidr(self.remoteIPPrefix).ip().family() == (self.ethertype == 'IPv4' ? 4 : 6)").message("remoteIPPrefix must be of the rule's ethertype").field_path(".remoteIPPrefix")
)]
pub struct SecurityGroupRule {
    /// ingress (to the port) or egress (from the port).
    pub direction: Direction,
    /// IPv4 or IPv6.
    #[serde(default = "ipv4")]
    pub ethertype: EtherType,
    /// tcp, udp, sctp, icmp, icmpv6, or an IP protocol number 0-255. Any when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self in ['tcp', 'udp', 'sctp', 'icmp', 'icmpv6', 'ipv6-icmp'] || (self.matches('^[0-9]{1,3}$') && int(self) <= 255)").message("protocol must be tcp, udp, sctp, icmp, icmpv6 or a number 0-255"))]
    pub protocol: Option<String>,
    /// First port of the range (tcp, udp, sctp), or the ICMP type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 65535))]
    pub port_range_min: Option<u32>,
    /// Last port of the range (tcp, udp, sctp), or the ICMP code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 65535))]
    pub port_range_max: Option<u32>,
    /// The peer's addresses. Any address when neither this nor remoteGroup is set.
    #[serde(
        rename = "remoteIPPrefix",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(max = 49))]
    #[x_kube(validation = Rule::new("isCIDR(self)").message("remoteIPPrefix must be a CIDR such as 0.0.0.0/0"))]
    pub remote_ip_prefix: Option<String>,
    /// The peer: every port that is a member of this group, in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub remote_group: Option<String>,
    /// A note for people; no effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub description: Option<String>,
}

fn ipv4() -> EtherType {
    EtherType::IPv4
}

/// What the system decided for a security group.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecurityGroupStatus {
    /// The generation of the spec this status describes.
    #[serde(default)]
    pub observed_generation: i64,
    /// How many rules the group has.
    #[serde(default)]
    pub rule_count: i64,
    /// How many ports are members.
    #[serde(default)]
    pub port_count: i64,
    /// How many nodes have realised it, and which have not and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodeRealisation>,
    /// Ready, with a reason and message naming the field and the conflict when not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
