//! FloatingIP: an external address mapped 1:1 onto a port, Neutron's floating IP.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::NodeRealisation;

/// An address on an external network, translated 1:1 to a port's fixed IP by
/// the router that joins the port's subnet to that network (Neutron's floating IP).
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "neutrino.dev",
    derive = "PartialEq",
    version = "v1alpha1",
    kind = "FloatingIP",
    plural = "floatingips",
    namespaced,
    status = "FloatingIPStatus",
    shortname = "nfip",
    category = "neutrino",
    doc = "An address on an external network mapped 1:1 onto a port's fixed IP, Neutron's floating IP.",
    printcolumn(name = "Address", type_ = "string", json_path = ".status.floatingIPAddress"),
    printcolumn(name = "Port", type_ = "string", json_path = ".spec.port"),
    printcolumn(name = "Fixed", type_ = "string", json_path = ".status.fixedIPAddress"),
    printcolumn(name = "Router", type_ = "string", json_path = ".status.router"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 63").message("metadata.name must be at most 63 characters")
)]
#[x_kube(
    validation = Rule::new("!has(self.fixedIPAddress) || has(self.port)").message("fixedIPAddress needs a port").field_path(".fixedIPAddress")
)]
#[serde(rename_all = "camelCase")]
pub struct FloatingIPSpec {
    /// The external network: `name` in the same namespace or `namespace/name`. Immutable.
    #[schemars(
        length(min = 1, max = 127),
        regex(pattern = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("network is immutable"))]
    pub network: String,

    /// The floating address; allocated from the external network's subnets
    /// when omitted. Immutable.
    #[serde(
        rename = "floatingIPAddress",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(max = 45))]
    #[x_kube(
        validation = Rule::new("isIP(self) && ip(self).family() == 4").message("floatingIPAddress must be an IPv4 address"),
        validation = Rule::new("self == oldSelf").message("floatingIPAddress is immutable")
    )]
    pub floating_ip_address: Option<String>,

    /// The port, in the same namespace, the address maps to. Without one the
    /// address is held but unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub port: Option<String>,

    /// Which of the port's IPv4 addresses to map; the first when omitted.
    #[serde(
        rename = "fixedIPAddress",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(max = 45))]
    #[x_kube(validation = Rule::new("isIP(self) && ip(self).family() == 4").message("fixedIPAddress must be an IPv4 address"))]
    pub fixed_ip_address: Option<String>,
}

/// What the system decided for a floating IP.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FloatingIPStatus {
    /// The generation of the spec this status describes.
    #[serde(default)]
    pub observed_generation: i64,
    /// The floating address in effect.
    #[serde(
        rename = "floatingIPAddress",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub floating_ip_address: Option<String>,
    /// The port's address it maps to.
    #[serde(
        rename = "fixedIPAddress",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub fixed_ip_address: Option<String>,
    /// The router that translates it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<String>,
    /// How many nodes have realised it, and which have not and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodeRealisation>,
    /// Ready, with a reason and message naming the field and the conflict when not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
