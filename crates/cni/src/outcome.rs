//! What the plugin answers: a result, in the shape its version reads, or
//! an error as the specification writes one.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::net::IpAddr;

use crate::version::Shape;

/// The specification's error codes the plugin uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    IncompatibleVersion = 1,
    UnsupportedField = 2,
    UnknownContainer = 3,
    InvalidEnvironment = 4,
    Io = 5,
    Decoding = 6,
    InvalidConfiguration = 7,
    TryAgainLater = 11,
    /// STATUS: the plugin cannot serve ADDs now.
    NotAvailable = 50,
    /// The node's agent did something and failed: neutrino's own code.
    Agent = 100,
}

/// An error, as the plugin prints it on standard output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{msg}: {details}")]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: Code, msg: impl Into<String>, details: impl Into<String>) -> Self {
        CniError {
            code: code as u32,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// The error as printed, in the version asked for.
    pub fn to_json(&self, version: &str) -> Value {
        let mut value = json!({"cniVersion": version, "code": self.code, "msg": self.msg});
        if !self.details.is_empty() {
            value["details"] = json!(self.details);
        }
        value
    }
}

/// The interface ADD made in the container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    pub mac: String,
    pub mtu: u32,
    /// The network namespace it is in.
    pub sandbox: String,
}

/// An address of the interface, with its subnet's gateway.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub address: IpNet,
    pub gateway: Option<IpAddr>,
}

/// A route the container gets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
}

/// What ADD did, in no version's shape yet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attached {
    pub interface: Option<Interface>,
    /// Empty for an attachment whose workload takes its address itself
    /// (a KubeVirt VM asking neutrino's DHCP).
    pub addresses: Vec<Address>,
    pub routes: Vec<Route>,
    pub nameservers: Vec<IpAddr>,
}

impl Attached {
    /// The result as version `version` (of shape `shape`) reads it.
    pub fn to_json(&self, version: &str, shape: Shape) -> Value {
        let interfaces: Vec<Value> = self
            .interface
            .iter()
            .map(|i| {
                let mut value = json!({"name": i.name, "mac": i.mac, "sandbox": i.sandbox});
                if shape >= Shape::OneOne {
                    value["mtu"] = json!(i.mtu);
                }
                value
            })
            .collect();
        let ips: Vec<Value> = self
            .addresses
            .iter()
            .map(|a| {
                let mut value = json!({"address": a.address.to_string()});
                if self.interface.is_some() {
                    value["interface"] = json!(0);
                }
                if let Some(gateway) = a.gateway {
                    value["gateway"] = json!(gateway.to_string());
                }
                if shape == Shape::Zero {
                    let family = if a.address.addr().is_ipv4() { "4" } else { "6" };
                    value["version"] = json!(family);
                }
                value
            })
            .collect();
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|r| {
                let mut value = json!({"dst": r.dst.to_string()});
                if let Some(gw) = r.gw {
                    value["gw"] = json!(gw.to_string());
                }
                value
            })
            .collect();
        let mut result = json!({"cniVersion": version, "interfaces": interfaces, "ips": ips});
        if !routes.is_empty() {
            result["routes"] = json!(routes);
        }
        if !self.nameservers.is_empty() {
            let servers: Vec<String> = self.nameservers.iter().map(IpAddr::to_string).collect();
            result["dns"] = json!({"nameservers": servers});
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attached() -> Attached {
        Attached {
            interface: Some(Interface {
                name: "net1".into(),
                mac: "fa:16:3e:00:00:01".into(),
                mtu: 1450,
                sandbox: "/var/run/netns/pod".into(),
            }),
            addresses: vec![
                Address {
                    address: "10.0.0.5/24".parse().unwrap(),
                    gateway: Some("10.0.0.1".parse().unwrap()),
                },
                Address {
                    address: "fd00::5/64".parse().unwrap(),
                    gateway: None,
                },
            ],
            routes: vec![Route {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: Some("10.0.0.1".parse().unwrap()),
            }],
            nameservers: vec!["10.0.0.2".parse().unwrap()],
        }
    }

    #[test]
    fn each_version_reads_its_own_shape() {
        let old = attached().to_json("0.4.0", Shape::Zero);
        assert_eq!(old["ips"][0]["version"], "4");
        assert_eq!(old["ips"][1]["version"], "6");
        assert!(old["interfaces"][0].get("mtu").is_none());

        let one = attached().to_json("1.0.0", Shape::One);
        assert!(one["ips"][0].get("version").is_none());
        assert!(one["interfaces"][0].get("mtu").is_none());
        assert_eq!(one["ips"][0]["interface"], 0);

        let newest = attached().to_json("1.1.0", Shape::OneOne);
        assert_eq!(newest["cniVersion"], "1.1.0");
        assert_eq!(newest["interfaces"][0]["mtu"], 1450);
        assert_eq!(newest["ips"][0]["gateway"], "10.0.0.1");
        assert!(newest["ips"][1].get("gateway").is_none());
        assert_eq!(newest["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(newest["dns"]["nameservers"][0], "10.0.0.2");
    }

    #[test]
    fn an_attachment_without_addresses_lists_none() {
        let mut vm = attached();
        (vm.addresses, vm.routes, vm.nameservers) = (vec![], vec![], vec![]);
        let result = vm.to_json("1.1.0", Shape::OneOne);
        assert_eq!(result["ips"], json!([]));
        assert!(result.get("routes").is_none() && result.get("dns").is_none());
    }

    #[test]
    fn an_error_prints_as_the_specification_writes_it() {
        let error = CniError::new(Code::InvalidConfiguration, "no network", "");
        assert_eq!(
            error.to_json("1.1.0"),
            json!({"cniVersion": "1.1.0", "code": 7, "msg": "no network"})
        );
    }
}
