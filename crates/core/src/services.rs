//! What serves a port — the DHCP servers that answer it and where the
//! metadata service does: what a Port's `status.services` says. Its own
//! node's servers are listed once that node has realised the port; the
//! routers on its network once they are Ready (each Router's own
//! `status.nodes` says whether its node has realised it: a port's status
//! follows its own realisation, not other objects').

use std::net::IpAddr;

use neutrino_api::{Ipv6Mode, NodeRealisation, PortServices, ServiceEndpoint};

use crate::resolve::{PortState, Resolution};
use crate::{Key, Kind, ObjectId};

/// `port`'s services, given how far its nodes have come. None for a port
/// bound to no node.
pub fn port_services(
    key: &Key,
    port: &PortState,
    resolution: &Resolution,
    realised: &dyn Fn(&ObjectId) -> Option<NodeRealisation>,
) -> Option<PortServices> {
    let node = port.node.as_ref()?;
    let done = realised(&ObjectId::new(Kind::Port, key.clone()))
        .is_some_and(|r| r.desired > 0 && r.ready == r.desired);
    let endpoint = |kind: &str, name: &str, node: &str, address: IpAddr| ServiceEndpoint {
        kind: kind.into(),
        name: name.into(),
        node: node.into(),
        address: address.to_string(),
    };
    let mut services = PortServices::default();
    if done {
        for (subnet_key, _) in &port.fixed_ips {
            let Some(subnet) = resolution.subnet(subnet_key) else {
                continue;
            };
            let Some(server) = subnet.dhcp.filter(|_| subnet.enable_dhcp) else {
                continue;
            };
            // A SLAAC subnet's server only advertises the prefix.
            if subnet.ipv6_address_mode == Some(Ipv6Mode::Slaac) {
                continue;
            }
            let served = endpoint("Subnet", &subnet_key.name, node, server);
            if server.is_ipv4() {
                services.metadata.push(served.clone());
            }
            services.dhcp.push(served);
        }
    }
    // The routers of the port's namespace with an IPv4 leg on its network.
    let namespace = Key::new(key.namespace.clone(), String::new());
    let routers = (resolution.routers.range(namespace..))
        .take_while(|(k, _)| k.namespace == key.namespace)
        .filter_map(|(k, v)| Some((k, v.as_ref().ok()?)));
    for (router_key, router) in routers {
        let leg = (router.interfaces.iter())
            .find(|leg| leg.network == port.network && leg.address.addr().is_ipv4());
        if let Some(leg) = leg {
            let address = leg.address.addr();
            services
                .metadata
                .push(endpoint("Router", &router_key.name, &router.node, address));
        }
    }
    Some(services)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fixtures::{object, quickstart};
    use crate::{ClusterConfig, Object, resolve};

    fn realisation(ready: i32) -> Option<NodeRealisation> {
        Some(NodeRealisation {
            desired: 2,
            ready,
            failed: Vec::new(),
        })
    }

    fn services(
        resolution: &Resolution,
        port: &str,
        realised: &dyn Fn(&ObjectId) -> Option<NodeRealisation>,
    ) -> PortServices {
        let key = Key::new("tenant-a", port);
        port_services(&key, resolution.port(&key).unwrap(), resolution, realised).unwrap()
    }

    #[test]
    fn a_port_is_served_dhcp_and_metadata_once_its_nodes_realised_it() {
        let resolution = resolve(&quickstart(), &ClusterConfig::default());
        let served = services(&resolution, "web-1", &|_| realisation(2));
        let dhcp = ServiceEndpoint {
            kind: "Subnet".into(),
            name: "blue-v4".into(),
            node: "node-1".into(),
            address: "10.10.0.10".into(),
        };
        assert_eq!(served.metadata, std::slice::from_ref(&dhcp));
        assert_eq!(served.dhcp, [dhcp]);
        // One node of two still applying: nothing is claimed served.
        assert_eq!(
            services(&resolution, "web-1", &|_| realisation(1)),
            PortServices::default()
        );
        assert_eq!(
            services(&resolution, "web-1", &|_| None),
            PortServices::default()
        );
    }

    #[test]
    fn a_ready_router_on_the_network_serves_metadata_from_its_own_node() {
        let mut snapshot = quickstart();
        let router = object(
            "Router",
            "tenant-a",
            "edge",
            json!({"interfaces": [{"subnet": "blue-v4"}]}),
        );
        snapshot.insert(Object::Router(router)).unwrap();
        let subnet = Key::new("tenant-a", "blue-v4");
        let mut off = (*snapshot.subnets[&subnet]).clone();
        off.spec.enable_dhcp = false;
        snapshot.subnets.insert(subnet, off.into());
        let resolution = resolve(&snapshot, &ClusterConfig::default());
        let served = services(&resolution, "web-2", &|_| realisation(2));
        assert!(served.dhcp.is_empty(), "{served:?}");
        let router = &served.metadata[..];
        assert_eq!(router.len(), 1, "{served:?}");
        assert_eq!(
            (router[0].kind.as_str(), router[0].name.as_str()),
            ("Router", "edge")
        );
        assert_eq!(router[0].address, "10.10.0.1");
        // The router is listed once Ready, whatever the port's realisation.
        assert_eq!(services(&resolution, "web-2", &|_| None).metadata, router);
    }

    #[test]
    fn an_unbound_port_has_no_services() {
        let resolution = resolve(&quickstart(), &ClusterConfig::default());
        let key = Key::new("tenant-a", "web-1");
        let mut port = resolution.port(&key).unwrap().clone();
        port.node = None;
        assert_eq!(
            port_services(&key, &port, &resolution, &|_| realisation(2)),
            None
        );
    }
}
