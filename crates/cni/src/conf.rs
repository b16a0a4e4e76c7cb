//! The network configuration a runtime hands the plugin on standard input:
//! what a NetworkAttachmentDefinition's `config` says, with what Multus
//! adds per pod (`runtimeConfig`) and what an earlier plugin of a chain
//! returned (`prevResult`).

use ipnet::IpNet;
use serde::Deserialize;
use std::path::PathBuf;

use crate::outcome::{CniError, Code};

/// Where the node's agent listens for the plugin, unless the
/// configuration names another socket.
pub const DEFAULT_SOCKET: &str = "/run/neutrino/cni.sock";

/// What Multus passes per pod, for a delegate whose configuration declares
/// the `ips` and `mac` capabilities.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    /// Addresses asked for, as CIDRs or bare addresses.
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub mac: Option<String>,
}

/// A neutrino attachment's configuration. Keys it does not know (Multus
/// and runtimes add their own) are left alone.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "type")]
    pub plugin: String,
    /// The Network, in the pod's namespace.
    #[serde(default)]
    pub network: String,
    /// The Port's groups; the namespace's `default` when absent.
    #[serde(default)]
    pub security_groups: Option<Vec<String>>,
    #[serde(default)]
    pub port_security: Option<bool>,
    /// False for a workload that takes its address itself, by DHCP from
    /// the network's own server — a KubeVirt VM behind the bridge binding:
    /// the interface is plugged with no address and the result lists none.
    #[serde(default = "yes")]
    pub pod_addresses: bool,
    /// The agent's socket, when it is the same on every node and not the
    /// default.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    #[serde(default)]
    pub runtime_config: RuntimeConfig,
    #[serde(default)]
    pub prev_result: Option<serde_json::Value>,
}

fn yes() -> bool {
    true
}

fn invalid(details: impl Into<String>) -> CniError {
    CniError::new(
        Code::InvalidConfiguration,
        "invalid neutrino network configuration",
        details,
    )
}

/// Whether `name` is a Kubernetes object name (RFC 1123 subdomain).
fn object_name(name: &str) -> bool {
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    !name.is_empty() && name.len() <= 253 && name.split('.').all(label)
}

impl NetConf {
    /// Reads and checks a configuration; the error names the field.
    pub fn parse(bytes: &[u8]) -> Result<Self, CniError> {
        let conf: NetConf = serde_json::from_slice(bytes).map_err(|e| {
            CniError::new(
                Code::Decoding,
                "the network configuration is not valid JSON for neutrino",
                e.to_string(),
            )
        })?;
        conf.check()?;
        Ok(conf)
    }

    fn check(&self) -> Result<(), CniError> {
        if self.plugin != "neutrino" {
            return Err(invalid(format!(
                "type is {:?}; this plugin is \"neutrino\"",
                self.plugin
            )));
        }
        if self.network.is_empty() {
            return Err(invalid(
                "network: name the Network to attach to, in the pod's namespace",
            ));
        }
        if !object_name(&self.network) {
            return Err(invalid(format!(
                "network: {:?} is not a Kubernetes object name",
                self.network
            )));
        }
        for (i, group) in self.security_groups.iter().flatten().enumerate() {
            if !object_name(group) {
                return Err(invalid(format!(
                    "securityGroups[{i}]: {group:?} is not a Kubernetes object name"
                )));
            }
        }
        if self.port_security == Some(false) && self.security_groups.is_some() {
            return Err(invalid(
                "securityGroups: security groups need portSecurity: true",
            ));
        }
        self.requested_ips()?;
        if !self.pod_addresses && !self.runtime_config.ips.is_empty() {
            return Err(invalid(
                "runtimeConfig.ips: an attachment with podAddresses: false takes no address in the pod",
            ));
        }
        Ok(())
    }

    /// The addresses Multus asked for, as CIDRs or bare addresses.
    pub fn requested_ips(&self) -> Result<Vec<IpNet>, CniError> {
        (self.runtime_config.ips.iter().enumerate())
            .map(|(i, text)| {
                text.parse::<IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        invalid(format!(
                            "runtimeConfig.ips[{i}]: {text:?} is not an IP address or CIDR"
                        ))
                    })
            })
            .collect()
    }

    /// The socket the agent listens on: the configuration's, else the
    /// node's (`node`, from the plugin's environment: one
    /// NetworkAttachmentDefinition serves nodes whose agents listen in
    /// different places), else the default.
    pub fn socket(&self, node: Option<&str>) -> PathBuf {
        (self.socket.clone())
            .or_else(|| node.filter(|n| !n.is_empty()).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NetConf, CniError> {
        NetConf::parse(text.as_bytes())
    }

    #[test]
    fn a_network_attachment_definition_config_reads_with_multus_additions() {
        let conf = parse(
            r#"{"cniVersion": "1.0.0", "name": "tenant-net", "type": "neutrino",
                "network": "web", "securityGroups": ["web"],
                "capabilities": {"ips": true, "mac": true},
                "runtimeConfig": {"ips": ["10.0.0.5/24"], "mac": "fa:16:3e:00:00:05"}}"#,
        )
        .unwrap();
        assert_eq!(conf.network, "web");
        assert!(conf.pod_addresses);
        assert_eq!(
            conf.requested_ips().unwrap(),
            ["10.0.0.5/24".parse::<IpNet>().unwrap()]
        );
        assert_eq!(
            conf.runtime_config.mac.as_deref(),
            Some("fa:16:3e:00:00:05")
        );
        assert_eq!(conf.socket(None), PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(conf.socket(Some("/x.sock")), PathBuf::from("/x.sock"));
    }

    #[test]
    fn each_bad_configuration_names_its_field() {
        let base = r#""cniVersion": "1.0.0", "name": "n""#;
        let cases = [
            (
                format!(r#"{{{base}, "type": "bridge", "network": "web"}}"#),
                "type is \"bridge\"",
            ),
            (
                format!(r#"{{{base}, "type": "neutrino"}}"#),
                "network: name the Network",
            ),
            (
                format!(r#"{{{base}, "type": "neutrino", "network": "Web_1"}}"#),
                "network: \"Web_1\"",
            ),
            (
                format!(
                    r#"{{{base}, "type": "neutrino", "network": "web", "securityGroups": ["a", "B"]}}"#
                ),
                "securityGroups[1]",
            ),
            (
                format!(
                    r#"{{{base}, "type": "neutrino", "network": "web", "portSecurity": false, "securityGroups": ["a"]}}"#
                ),
                "need portSecurity: true",
            ),
            (
                format!(
                    r#"{{{base}, "type": "neutrino", "network": "web", "runtimeConfig": {{"ips": ["10.0.0.300"]}}}}"#
                ),
                "runtimeConfig.ips[0]",
            ),
            (
                format!(
                    r#"{{{base}, "type": "neutrino", "network": "web", "podAddresses": false, "runtimeConfig": {{"ips": ["10.0.0.3"]}}}}"#
                ),
                "podAddresses: false takes no address",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(&text).unwrap_err();
            assert_eq!(error.code, Code::InvalidConfiguration as u32, "{text}");
            assert!(
                error.details.contains(expected),
                "{text}: {}",
                error.details
            );
        }
    }

    #[test]
    fn a_configuration_that_is_not_json_or_lacks_the_basics_is_a_decoding_error() {
        for text in ["not json", r#"{"name": "n", "type": "neutrino"}"#] {
            let error = parse(text).unwrap_err();
            assert_eq!(error.code, Code::Decoding as u32, "{text}");
        }
        let error = parse(r#"{"name": "n", "type": "neutrino"}"#).unwrap_err();
        assert!(error.details.contains("cniVersion"), "{}", error.details);
    }
}
