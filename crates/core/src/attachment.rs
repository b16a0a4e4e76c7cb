//! A pod's attachment to a neutrino network, as a CNI ADD asks for it: the
//! Port that stands for it. Named from the pod and the interface, owned by
//! the pod so that the API server's garbage collector removes it with the
//! pod, bound to the pod's node, with the addresses and MAC Multus passed
//! per pod; each address on the subnet of the network that holds it.

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube_core::ObjectMeta;
use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::Key;
use crate::allocate::Mac;
use crate::plan::{NodePlan, PortPlan, RoutePlan};
use crate::resolve::Resolution;
use neutrino_api::{FixedIP, Port, PortSpec};

/// The annotation that says which runtime attachment made a Port:
/// `<container id>/<interface>`, as CNI keys an attachment.
pub const ATTACHMENT_ANNOTATION: &str = "neutrino.dev/cni-attachment";

/// The annotation that says which pod holds a Port that pods name (a
/// VM's): `<pod name>/<pod uid>`, the pod in the Port's namespace. A pod
/// on another node that names the Port while its holder still runs is
/// the target of a live migration: it waits beside the holder until the
/// holder ends.
pub const HOLDER_ANNOTATION: &str = "neutrino.dev/held-by";

/// A pod that holds a Port, as [`HOLDER_ANNOTATION`] names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub pod: String,
    pub uid: String,
}

impl Holder {
    /// The holder an annotation's value names; `None` for one that does
    /// not read (which holds nothing).
    pub fn parse(value: &str) -> Option<Holder> {
        let (pod, uid) = value.split_once('/')?;
        (!pod.is_empty() && !uid.is_empty()).then(|| Holder {
            pod: pod.into(),
            uid: uid.into(),
        })
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.pod, self.uid)
    }
}

/// The longest object name a Port may have.
const NAME_MAX: usize = 63;

/// What an ADD asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub namespace: &'a str,
    pub pod: &'a str,
    pub pod_uid: &'a str,
    pub container_id: &'a str,
    pub interface: &'a str,
    pub node: &'a str,
    pub network: &'a str,
    pub security_groups: Option<&'a [String]>,
    pub port_security: Option<bool>,
    /// Addresses asked for; their prefix lengths are not read.
    pub ips: &'a [IpNet],
    pub mac: Option<&'a str>,
}

/// Why the Port cannot be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    #[error(
        "runtimeConfig.ips: {address} is on no subnet of network {namespace}/{network} (its subnets: {subnets})"
    )]
    NoSubnet {
        address: String,
        namespace: String,
        network: String,
        subnets: String,
    },
}

/// The Port's name: the pod's and the interface's, made a valid name;
/// shortened with a hash of both when longer than a Port's name may be.
pub fn port_name(pod: &str, interface: &str) -> String {
    let clean = |text: &str| -> String {
        text.chars()
            .map(|c| match c.to_ascii_lowercase() {
                c @ ('a'..='z' | '0'..='9' | '-') => c,
                _ => '-',
            })
            .collect()
    };
    let name = format!("{}-{}", clean(pod), clean(interface));
    let name = name.trim_matches('-').to_string();
    if name.len() <= NAME_MAX {
        return name;
    }
    let hash = crate::digest::hex(&[pod, interface], 5);
    let keep = NAME_MAX - hash.len() - 1;
    format!("{}-{hash}", name[..keep].trim_end_matches('-'))
}

/// The Port `request` asks for, given the network's subnets by name and CIDR.
pub fn port(request: &Request, subnets: &BTreeMap<String, IpNet>) -> Result<Port, AttachError> {
    let fixed_ips = request
        .ips
        .iter()
        .map(|ip| {
            let address = ip.addr();
            let subnet = subnets.iter().find(|(_, cidr)| cidr.contains(&address));
            match subnet {
                Some((name, _)) => Ok(FixedIP {
                    subnet: name.clone(),
                    ip_address: Some(address.to_string()),
                }),
                None => Err(AttachError::NoSubnet {
                    address: address.to_string(),
                    namespace: request.namespace.into(),
                    network: request.network.into(),
                    subnets: subnets
                        .iter()
                        .map(|(n, c)| format!("{n} {c}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                }),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: request.pod.into(),
        uid: request.pod_uid.into(),
        controller: None,
        block_owner_deletion: None,
    };
    let annotations = BTreeMap::from([(
        ATTACHMENT_ANNOTATION.to_string(),
        format!("{}/{}", request.container_id, request.interface),
    )]);
    let mut port = Port::new(
        &port_name(request.pod, request.interface),
        PortSpec {
            network: request.network.into(),
            fixed_ips,
            mac_address: request.mac.map(str::to_string),
            security_groups: request
                .security_groups
                .map(<[String]>::to_vec)
                .unwrap_or_default(),
            port_security: request.port_security.unwrap_or(true),
            allowed_address_pairs: Vec::new(),
            node_name: Some(request.node.into()),
            // The pod's name, as its own hostname is, where it is a label.
            hostname: crate::ident::is_dns_label(request.pod).then(|| request.pod.to_string()),
            metadata_secret_name: None,
        },
    );
    port.metadata = ObjectMeta {
        namespace: Some(request.namespace.into()),
        owner_references: Some(vec![owner]),
        annotations: Some(annotations),
        ..port.metadata
    };
    Ok(port)
}

/// What a plugged port's workload is given: the interface the agent made
/// (its workload end, MAC and MTU) and what the port's subnets hand out by
/// DHCP — each address with its subnet's gateway, the host routes and the
/// name servers — for a workload that takes them from the plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Configuration {
    /// The node's end, on `bridge`.
    pub interface: String,
    pub bridge: String,
    /// The workload's end, as the agent makes it in the node's namespace.
    pub peer: String,
    pub mac: Mac,
    pub mtu: u32,
    pub addresses: Vec<(IpNet, Option<IpAddr>)>,
    pub routes: Vec<RoutePlan>,
    pub nameservers: Vec<IpAddr>,
}

/// The configuration of the node's port `plan`, from the resolution the
/// plan was made from.
pub fn configuration(resolution: &Resolution, plan: &PortPlan) -> Configuration {
    let mut addresses = Vec::new();
    let mut routes: Vec<RoutePlan> = Vec::new();
    let mut nameservers: Vec<IpAddr> = Vec::new();
    let subnets = resolution.port(&plan.port).map(|p| &p.fixed_ips[..]);
    for (subnet_key, address) in subnets.into_iter().flatten() {
        let Some(subnet) = resolution.subnet(subnet_key) else {
            continue;
        };
        let Ok(address) = IpNet::new(*address, subnet.cidr.prefix_len()) else {
            continue;
        };
        addresses.push((address, subnet.gateway));
        for (destination, nexthop) in &subnet.host_routes {
            let route = RoutePlan {
                destination: *destination,
                nexthop: *nexthop,
            };
            if !routes.contains(&route) {
                routes.push(route);
            }
        }
        for server in &subnet.dns {
            if !nameservers.contains(server) {
                nameservers.push(*server);
            }
        }
    }
    Configuration {
        interface: plan.interface.clone(),
        bridge: plan.bridge.clone(),
        peer: plan.peer.clone(),
        mac: plan.mac,
        mtu: plan.mtu,
        addresses,
        routes,
        nameservers,
    }
}

impl Configuration {
    /// The port's veth pair with its workload end made straight in
    /// `sandbox`.
    pub fn link_into(&self, port: &Key, sandbox: &Sandbox) -> crate::reconcile::DesiredLink {
        crate::reconcile::port_link(&PortPlan {
            port: port.clone(),
            interface: self.interface.clone(),
            peer: sandbox.interface.clone(),
            peer_netns: Some(sandbox.netns.clone()),
            bridge: self.bridge.clone(),
            mac: self.mac,
            mtu: self.mtu,
            addresses: Vec::new(),
        })
    }
}

/// Where a pod's attachment is: the runtime's namespace (a path) and the
/// interface it asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sandbox {
    pub netns: String,
    pub interface: String,
}

/// The plan as the node applies it with the attachments it holds: the
/// workload end of an attached port is made straight in its pod's
/// namespace under the pod's interface name — moving a link between
/// namespaces costs the kernel tens of milliseconds, making it there a
/// few — and a port that is attached through the plugin (`claimed`) but
/// has no pod on the node now gets no veth at all, rather than one
/// waiting for a pod.
pub fn with_sandboxes(
    mut plan: NodePlan,
    sandboxes: &BTreeMap<Key, Sandbox>,
    claimed: impl Fn(&Key) -> bool,
) -> NodePlan {
    plan.ports
        .retain_mut(|port| match sandboxes.get(&port.port) {
            Some(sandbox) => {
                port.peer = sandbox.interface.clone();
                port.peer_netns = Some(sandbox.netns.clone());
                true
            }
            None => !claimed(&port.port),
        });
    plan
}

/// The configuration of each of the node's ports in `ports`.
pub fn configurations(resolution: &Resolution, ports: &[PortPlan]) -> BTreeMap<Key, Configuration> {
    (ports.iter())
        .map(|plan| (plan.port.clone(), configuration(resolution, plan)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(ips: &'a [IpNet]) -> Request<'a> {
        Request {
            namespace: "tenant-a",
            pod: "web-0",
            pod_uid: "1234",
            container_id: "c0ffee",
            interface: "net1",
            node: "node-1",
            network: "web",
            security_groups: None,
            port_security: None,
            ips,
            mac: Some("fa:16:3e:00:00:05"),
        }
    }

    fn subnets() -> BTreeMap<String, IpNet> {
        BTreeMap::from([
            ("web-v4".to_string(), "10.0.0.0/24".parse().unwrap()),
            ("web-v6".to_string(), "fd00::/64".parse().unwrap()),
        ])
    }

    #[test]
    fn a_pods_port_is_owned_by_it_bound_to_its_node_with_the_addresses_asked_for() {
        let ips = [
            "10.0.0.5/24".parse().unwrap(),
            "fd00::5/64".parse().unwrap(),
        ];
        let port = port(&request(&ips), &subnets()).unwrap();
        assert_eq!(port.metadata.name.as_deref(), Some("web-0-net1"));
        assert_eq!(port.metadata.namespace.as_deref(), Some("tenant-a"));
        let owner = &port.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (&*owner.kind, &*owner.name, &*owner.uid),
            ("Pod", "web-0", "1234")
        );
        assert_eq!(
            port.metadata.annotations.as_ref().unwrap()[ATTACHMENT_ANNOTATION],
            "c0ffee/net1"
        );
        assert_eq!(port.spec.node_name.as_deref(), Some("node-1"));
        assert!(port.spec.port_security);
        let fixed: Vec<(&str, &str)> = (port.spec.fixed_ips.iter())
            .map(|f| (&*f.subnet, f.ip_address.as_deref().unwrap()))
            .collect();
        assert_eq!(fixed, [("web-v4", "10.0.0.5"), ("web-v6", "fd00::5")]);
        assert_eq!(port.spec.mac_address.as_deref(), Some("fa:16:3e:00:00:05"));
    }

    #[test]
    fn an_address_on_none_of_the_networks_subnets_is_named_with_them() {
        let ips = ["192.168.1.5/24".parse().unwrap()];
        let error = port(&request(&ips), &subnets()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "runtimeConfig.ips: 192.168.1.5 is on no subnet of network tenant-a/web \
             (its subnets: web-v4 10.0.0.0/24, web-v6 fd00::/64)"
        );
    }

    #[test]
    fn a_plugged_port_is_given_what_its_subnet_hands_out_by_dhcp() {
        use crate::fixtures::{object, quickstart};
        use crate::resolve::resolve;
        use crate::{ClusterConfig, Object};
        let mut snapshot = quickstart();
        let key = Key::new("tenant-a", "blue-v4");
        let subnet = object(
            "Subnet",
            "tenant-a",
            "blue-v4",
            serde_json::json!({
                "network": "blue", "cidr": "10.10.0.0/24",
                "dnsNameservers": ["10.10.0.2"], "enableDHCP": true,
                "hostRoutes": [{"destination": "192.168.0.0/16", "nexthop": "10.10.0.254"}],
            }),
        );
        snapshot.subnets.remove(&key);
        snapshot.insert(Object::Subnet(subnet)).unwrap();
        let config = ClusterConfig::default();
        let resolution = resolve(&snapshot, &config);
        let plan = crate::plan::plan_node(&resolution, &config, config.node("node-1").unwrap());
        let all = configurations(&resolution, &plan.ports);
        let web = &all[&Key::new("tenant-a", "web-1")];
        let port = resolution.port(&Key::new("tenant-a", "web-1")).unwrap();
        assert_eq!(
            web.peer,
            crate::names::port_peer(&Key::new("tenant-a", "web-1"))
        );
        assert_eq!((web.mac, web.mtu), (port.mac, port.mtu));
        let address = IpNet::new(port.fixed_ips[0].1, 24).unwrap();
        assert_eq!(
            web.addresses,
            [(address, Some("10.10.0.1".parse().unwrap()))]
        );
        assert_eq!(
            web.routes,
            [RoutePlan {
                destination: "192.168.0.0/16".parse().unwrap(),
                nexthop: "10.10.0.254".parse().unwrap(),
            }]
        );
        assert_eq!(web.nameservers, ["10.10.0.2".parse::<IpAddr>().unwrap()]);
        assert_eq!(all.len(), 1, "only node-1's ports: {all:?}");
    }

    #[test]
    fn attached_ports_are_made_in_their_pods_and_claimed_ones_without_a_pod_not_at_all() {
        let plan = crate::fixtures::quickstart_plan("node-1");
        let web = Key::new("tenant-a", "web-1");
        let sandboxes = BTreeMap::from([(
            web.clone(),
            Sandbox {
                netns: "/var/run/netns/cni-1".into(),
                interface: "net1".into(),
            },
        )]);
        let overlaid = with_sandboxes(plan.clone(), &sandboxes, |_| true);
        let port = &overlaid.ports[0];
        assert_eq!(
            (&*port.peer, port.peer_netns.as_deref()),
            ("net1", Some("/var/run/netns/cni-1"))
        );
        assert!(
            with_sandboxes(plan.clone(), &BTreeMap::new(), |k| *k == web)
                .ports
                .is_empty()
        );
        assert_eq!(
            with_sandboxes(plan.clone(), &BTreeMap::new(), |_| false),
            plan
        );
    }

    #[test]
    fn holders_read_back_as_written_and_nothing_else_reads() {
        let holder = Holder {
            pod: "virt-launcher-vm-1-abcde".into(),
            uid: "6f1c-22".into(),
        };
        assert_eq!(Holder::parse(&holder.to_string()), Some(holder));
        for bad in ["", "pod", "pod/", "/uid"] {
            assert_eq!(Holder::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn port_names_are_valid_and_short_and_stay_apart() {
        assert_eq!(port_name("web-0", "net1"), "web-0-net1");
        assert_eq!(port_name("Web_0", "eth.1"), "web-0-eth-1");
        let long = "a".repeat(80);
        let (one, two) = (port_name(&long, "net1"), port_name(&long, "net2"));
        assert!(one.len() <= 63 && two.len() <= 63, "{one} {two}");
        assert_ne!(one, two);
        assert!(!one.ends_with('-') && !one.starts_with('-'));
    }
}
