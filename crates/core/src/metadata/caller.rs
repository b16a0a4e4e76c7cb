//! Who is calling: the port that holds the source address on the
//! listener's network, and what its objects say about it.

use std::net::IpAddr;
use std::sync::Arc;

use kube_core::ResourceExt;
use neutrino_api::{FloatingIP, Port, Subnet};

use super::{FixedAddress, Instance, Listener, Scope};
use crate::{Key, Snapshot, digest};

/// The objects the service reads, as the agent's caches hold them.
pub trait Objects {
    fn ports_in(&self, namespace: &str) -> Vec<Arc<Port>>;
    fn floating_ips_in(&self, namespace: &str) -> Vec<Arc<FloatingIP>>;
    fn subnet(&self, key: &Key) -> Option<Arc<Subnet>>;
}

/// Why a request is not answered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no port of network {network} bound to node {node} holds {address}")]
    NotOnNode {
        network: Key,
        node: String,
        address: IpAddr,
    },
    #[error("no port of network {network} behind router {router} holds {address}")]
    NotBehindRouter {
        network: Key,
        router: Key,
        address: IpAddr,
    },
}

/// The instance whose port holds `address`, calling `listener`.
pub fn caller(
    objects: &impl Objects,
    listener: &Listener,
    address: IpAddr,
) -> Result<Instance, Refusal> {
    let network = &listener.network;
    let found = objects
        .ports_in(&network.namespace)
        .into_iter()
        .find(|port| {
            port.spec.network == network.name
                && match &listener.scope {
                    Scope::Node(node) => port.spec.node_name.as_ref() == Some(node),
                    Scope::Router(_) => true,
                }
                && holds(port, address)
        });
    match found {
        Some(port) => Ok(instance(objects, &port)),
        None => Err(match &listener.scope {
            Scope::Node(node) => Refusal::NotOnNode {
                network: network.clone(),
                node: node.clone(),
                address,
            },
            Scope::Router(router) => Refusal::NotBehindRouter {
                network: network.clone(),
                router: router.clone(),
                address,
            },
        }),
    }
}

/// Whether `port`'s allocated addresses include `source`. Allowed address
/// pairs do not count: they may be shared (VRRP), a fixed IP never is.
fn holds(port: &Port, source: IpAddr) -> bool {
    let status = port.status.iter();
    status
        .flat_map(|s| &s.fixed_ips)
        .any(|ip| ip.ip_address.parse() == Ok(source))
}

/// What the service tells `port`'s workload.
fn instance(objects: &impl Objects, port: &Port) -> Instance {
    let namespace = port.namespace().unwrap_or_default();
    let key = Key::new(namespace.clone(), port.name_any());
    let status = port.status.clone().unwrap_or_default();
    let addresses = (status.fixed_ips.iter())
        .filter_map(|held| {
            let subnet_key = Key::new(namespace.clone(), held.subnet.clone());
            let subnet = objects.subnet(&subnet_key)?;
            let ip: IpAddr = held.ip_address.parse().ok()?;
            let gateway = (subnet.status.as_ref())
                .and_then(|s| s.gateway_ip.as_deref())
                .and_then(|g| g.parse().ok());
            Some(FixedAddress {
                subnet: subnet_key,
                ip,
                cidr: subnet.spec.cidr.parse().ok()?,
                dhcp: subnet.spec.enable_dhcp,
                ipv6_mode: subnet.spec.ipv6_address_mode,
                gateway,
                dns: parsed(subnet.spec.dns_nameservers.iter()),
                routes: (subnet.spec.host_routes.iter())
                    .filter_map(|r| Some((r.destination.parse().ok()?, r.nexthop.parse().ok()?)))
                    .collect(),
            })
        })
        .collect();
    let floating_ips = (objects.floating_ips_in(&namespace).iter())
        .filter(|f| f.spec.port.as_deref() == Some(key.name.as_str()))
        .filter_map(|f| {
            f.status
                .as_ref()?
                .floating_ip_address
                .as_deref()?
                .parse()
                .ok()
        })
        .collect();
    let security_groups = if !port.spec.port_security {
        Vec::new()
    } else if port.spec.security_groups.is_empty() {
        vec!["default".to_string()]
    } else {
        port.spec.security_groups.clone()
    };
    Instance {
        uuid: port.uid().unwrap_or_else(|| derived_uuid(&key)),
        hostname: crate::resolve::hostname(&key, port),
        mac: status.mac_address.clone().unwrap_or_default(),
        mtu: status.mtu,
        network: Key::new(namespace.clone(), port.spec.network.clone()),
        node: port.spec.node_name.clone(),
        addresses,
        floating_ips,
        security_groups,
        secret: port.spec.metadata_secret_name.clone(),
        port: key,
    }
}

fn parsed<'a>(texts: impl Iterator<Item = &'a String>) -> Vec<IpAddr> {
    texts.filter_map(|t| t.parse().ok()).collect()
}

/// A stable UUID for a port without a uid (read from files).
fn derived_uuid(key: &Key) -> String {
    let hex = digest::hex(&["port", &key.namespace, &key.name], 16);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

impl Objects for Snapshot {
    fn ports_in(&self, namespace: &str) -> Vec<Arc<Port>> {
        in_namespace(&self.ports, namespace)
    }

    fn floating_ips_in(&self, namespace: &str) -> Vec<Arc<FloatingIP>> {
        in_namespace(&self.floating_ips, namespace)
    }

    fn subnet(&self, key: &Key) -> Option<Arc<Subnet>> {
        self.subnets.get(key).cloned()
    }
}

fn in_namespace<T>(map: &std::collections::BTreeMap<Key, Arc<T>>, namespace: &str) -> Vec<Arc<T>> {
    map.range(Key::new(namespace, "")..)
        .take_while(|(k, _)| k.namespace == namespace)
        .map(|(_, v)| v.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use neutrino_api::{AllocatedIP, PortSpec, PortStatus};

    fn port(namespace: &str, name: &str, node: &str, ip: &str) -> Port {
        let mut port = Port::new(
            name,
            PortSpec {
                network: "blue".into(),
                fixed_ips: Vec::new(),
                mac_address: None,
                security_groups: Vec::new(),
                port_security: true,
                allowed_address_pairs: Vec::new(),
                node_name: Some(node.into()),
                hostname: None,
                metadata_secret_name: None,
            },
        );
        port.metadata.namespace = Some(namespace.into());
        port.status = Some(PortStatus {
            fixed_ips: vec![AllocatedIP {
                subnet: "blue-v4".into(),
                ip_address: ip.into(),
            }],
            mac_address: Some("02:00:00:00:00:01".into()),
            ..PortStatus::default()
        });
        port
    }

    fn snapshot(ports: Vec<Port>) -> Snapshot {
        let mut snapshot = Snapshot::default();
        for p in ports {
            let key = Key::new(p.namespace().unwrap(), p.name_any());
            snapshot.ports.insert(key, Arc::new(p));
        }
        snapshot
    }

    fn dhcp_listener(namespace: &str, node: &str) -> Listener {
        Listener {
            namespace: "dhcp".into(),
            interface: "eth".into(),
            network: Key::new(namespace, "blue"),
            scope: Scope::Node(node.into()),
        }
    }

    #[test]
    fn the_caller_is_the_port_of_the_listeners_network_with_the_source_address() {
        // Two tenants with the same CIDR, a port each at the same address.
        let objects = snapshot(vec![
            port("tenant-a", "web", "node-1", "10.0.0.5"),
            port("tenant-b", "evil", "node-1", "10.0.0.5"),
        ]);
        let ip = "10.0.0.5".parse().unwrap();
        let a = caller(&objects, &dhcp_listener("tenant-a", "node-1"), ip).unwrap();
        assert_eq!(a.port, Key::new("tenant-a", "web"));
        assert_eq!(a.hostname, "web");
        let b = caller(&objects, &dhcp_listener("tenant-b", "node-1"), ip).unwrap();
        assert_eq!(b.port, Key::new("tenant-b", "evil"));
    }

    #[test]
    fn a_dhcp_namespace_answers_its_own_nodes_ports_only_and_a_router_all_behind_it() {
        let objects = snapshot(vec![port("tenant-a", "web", "node-2", "10.0.0.5")]);
        let ip = "10.0.0.5".parse().unwrap();
        let refused = caller(&objects, &dhcp_listener("tenant-a", "node-1"), ip).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "no port of network tenant-a/blue bound to node node-1 holds 10.0.0.5"
        );
        let router = Listener {
            scope: Scope::Router(Key::new("tenant-a", "edge")),
            ..dhcp_listener("tenant-a", "node-1")
        };
        assert_eq!(
            caller(&objects, &router, ip).unwrap().node.as_deref(),
            Some("node-2")
        );
        let other = "10.0.0.6".parse().unwrap();
        assert!(caller(&objects, &router, other).is_err());
    }

    #[test]
    fn a_port_without_a_uid_has_a_stable_uuid() {
        let objects = snapshot(vec![port("tenant-a", "web", "node-1", "10.0.0.5")]);
        let listener = dhcp_listener("tenant-a", "node-1");
        let ip = "10.0.0.5".parse().unwrap();
        let first = caller(&objects, &listener, ip).unwrap();
        assert_eq!(first.uuid, caller(&objects, &listener, ip).unwrap().uuid);
        assert_eq!(first.uuid.len(), 36);
        assert_eq!(first.instance_id().len(), 19);
    }
}
