//! The two layouts cloud-init and other guests read: OpenStack's
//! (`/openstack/<version>/meta_data.json`, `network_data.json`,
//! `user_data`) and EC2's (`/<version>/meta-data/…`, `user-data`). Every
//! version a guest asks for is served the same content.

use serde_json::{Value, json};
use std::net::IpAddr;

use super::{Extras, Instance};

/// The OpenStack versions listed; guests pick the newest they know.
const OPENSTACK_VERSIONS: [&str; 9] = [
    "2012-08-10",
    "2013-04-04",
    "2013-10-17",
    "2015-10-15",
    "2016-06-30",
    "2016-10-06",
    "2017-02-22",
    "2018-08-27",
    "latest",
];

/// The EC2 versions listed at the root; any dated version is served.
const EC2_VERSIONS: [&str; 2] = ["2009-04-04", "latest"];

/// An HTTP answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Reply {
    fn text(body: impl Into<String>) -> Self {
        Self {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
        }
    }

    fn json(value: &Value) -> Self {
        Self {
            status: 200,
            content_type: "application/json",
            body: serde_json::to_vec_pretty(value).expect("a JSON value serialises"),
        }
    }

    fn bytes(body: &[u8]) -> Self {
        Self {
            status: 200,
            content_type: "application/octet-stream",
            body: body.to_vec(),
        }
    }

    /// A refusal with `message` as its body.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{}\n", message.into()).into_bytes(),
        }
    }

    fn not_found(path: &str) -> Self {
        Self::error(404, format!("{path}: not found"))
    }
}

/// The answer to `GET path` from `instance`, whose Secret gave `extras`.
pub fn reply(path: &str, instance: &Instance, extras: &Extras) -> Reply {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        [] => Reply::text(EC2_VERSIONS.join("\n")),
        ["openstack"] => Reply::text(OPENSTACK_VERSIONS.join("\n")),
        ["openstack", version, rest @ ..] if OPENSTACK_VERSIONS.contains(version) => {
            openstack(rest, instance, extras).unwrap_or_else(|| Reply::not_found(path))
        }
        [version, rest @ ..] if is_ec2_version(version) => {
            ec2(rest, instance, extras).unwrap_or_else(|| Reply::not_found(path))
        }
        _ => Reply::not_found(path),
    }
}

fn is_ec2_version(version: &str) -> bool {
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    version == "latest"
        || matches!(version.split('-').collect::<Vec<_>>()[..], [y, m, d] if digits(y, 4) && digits(m, 2) && digits(d, 2))
}

fn openstack(rest: &[&str], instance: &Instance, extras: &Extras) -> Option<Reply> {
    match rest {
        [] => {
            let mut files = vec!["meta_data.json", "network_data.json"];
            if extras.user_data.is_some() {
                files.push("user_data");
            }
            files.extend(["vendor_data.json", "vendor_data2.json"]);
            Some(Reply::text(files.join("\n")))
        }
        ["meta_data.json"] => Some(Reply::json(&meta_data(instance, extras))),
        ["network_data.json"] => Some(Reply::json(&network_data(instance))),
        ["user_data"] => extras.user_data.as_deref().map(Reply::bytes),
        ["vendor_data.json" | "vendor_data2.json"] => Some(Reply::json(&json!({}))),
        _ => None,
    }
}

fn meta_data(instance: &Instance, extras: &Extras) -> Value {
    let keys: Vec<(String, &String)> = (extras.ssh_keys.iter().enumerate())
        .map(|(i, key)| (format!("key-{i}"), key))
        .collect();
    json!({
        "uuid": instance.uuid,
        "name": instance.hostname,
        "hostname": instance.hostname,
        "launch_index": 0,
        "project_id": instance.port.namespace,
        "public_keys": keys.iter().map(|(n, k)| (n.clone(), json!(k))).collect::<serde_json::Map<_, _>>(),
        "keys": keys.iter().map(|(n, k)| json!({"name": n, "type": "ssh", "data": k})).collect::<Vec<_>>(),
        "meta": meta(instance),
        "devices": [],
    })
}

/// The user-defined part of meta_data.json, strings only as in Nova: the
/// Port, its network and its addresses, for templates and scripts that
/// read them without parsing network_data.json.
fn meta(instance: &Instance) -> Value {
    let joined = |ips: &mut dyn Iterator<Item = IpAddr>| {
        ips.map(|ip| ip.to_string()).collect::<Vec<_>>().join(",")
    };
    let mut meta = json!({
        "port": instance.port.to_string(),
        "network": instance.network.to_string(),
        "fixed_ips": joined(&mut instance.addresses.iter().map(|a| a.ip)),
    });
    if !instance.floating_ips.is_empty() {
        meta["floating_ips"] = json!(joined(&mut instance.floating_ips.iter().copied()));
    }
    meta
}

/// Nova's network_data.json: one link (the port), a network per address.
fn network_data(instance: &Instance) -> Value {
    let link = format!("port-{}", instance.port.name);
    let mut dns = Vec::new();
    let networks: Vec<Value> = (instance.addresses.iter().enumerate())
        .map(|(i, a)| {
            let mut routes: Vec<Value> = (a.routes.iter())
                .map(|(destination, nexthop)| {
                    route(destination.network(), destination.netmask(), *nexthop)
                })
                .collect();
            if let Some(gateway) = a.gateway {
                let any: IpAddr = if a.ip.is_ipv4() {
                    std::net::Ipv4Addr::UNSPECIFIED.into()
                } else {
                    std::net::Ipv6Addr::UNSPECIFIED.into()
                };
                routes.push(route(any, any, gateway));
            }
            let services: Vec<Value> = (a.dns.iter())
                .map(|d| json!({"type": "dns", "address": d.to_string()}))
                .collect();
            for service in &services {
                if !dns.contains(service) {
                    dns.push(service.clone());
                }
            }
            json!({
                "id": format!("network{i}"),
                "link": link,
                "type": network_type(a),
                "ip_address": a.ip.to_string(),
                "netmask": a.cidr.netmask().to_string(),
                "routes": routes,
                "network_id": instance.network.to_string(),
                "services": services,
            })
        })
        .collect();
    let mut link_value = json!({
        "id": link,
        "type": "phy",
        "ethernet_mac_address": instance.mac,
        "vif_id": instance.uuid,
    });
    if let Some(mtu) = instance.mtu {
        link_value["mtu"] = json!(mtu);
    }
    json!({"links": [link_value], "networks": networks, "services": dns})
}

/// How Nova names the way an address is configured: `ipv4_dhcp` where
/// DHCP hands it out, `ipv6_slaac` and `ipv6_dhcpv6-…` by the subnet's
/// mode, and `ipv4`/`ipv6` for a static one.
fn network_type(address: &super::FixedAddress) -> String {
    match (address.ip.is_ipv4(), address.ipv6_mode) {
        (true, _) if address.dhcp => "ipv4_dhcp".into(),
        (true, _) => "ipv4".into(),
        (false, Some(mode)) => format!("ipv6_{mode}"),
        (false, None) => "ipv6".into(),
    }
}

fn route(network: IpAddr, netmask: IpAddr, gateway: IpAddr) -> Value {
    json!({"network": network.to_string(), "netmask": netmask.to_string(), "gateway": gateway.to_string()})
}

/// One level of the EC2 tree: a value, or entries listed by label.
enum Node {
    Leaf(String),
    Dir(Vec<(String, String, Node)>),
}

fn dir(entries: Vec<(&str, Node)>) -> Node {
    Node::Dir(
        entries
            .into_iter()
            .map(|(name, node)| (name.to_string(), name.to_string(), node))
            .collect(),
    )
}

fn ec2(rest: &[&str], instance: &Instance, extras: &Extras) -> Option<Reply> {
    match rest {
        [] => {
            let mut entries = vec!["meta-data/"];
            if extras.user_data.is_some() {
                entries.push("user-data");
            }
            Some(Reply::text(entries.join("\n")))
        }
        ["user-data"] => extras.user_data.as_deref().map(Reply::bytes),
        ["meta-data", path @ ..] => {
            let mut node = &ec2_tree(instance, extras);
            for part in path {
                let Node::Dir(entries) = node else {
                    return None;
                };
                node = &entries.iter().find(|(name, _, _)| name == part)?.2;
            }
            Some(match node {
                Node::Leaf(value) => Reply::text(value.clone()),
                Node::Dir(entries) => Reply::text(
                    entries
                        .iter()
                        // A relabelled entry (a key's `0=key-0`) is listed as it is.
                        .map(|(name, label, node)| match node {
                            Node::Dir(_) if name == label => format!("{label}/"),
                            _ => label.clone(),
                        })
                        .collect::<Vec<_>>()
                        .join("\n"),
                ),
            })
        }
        _ => None,
    }
}

fn ec2_tree(instance: &Instance, extras: &Extras) -> Node {
    let leaf = |s: &str| Node::Leaf(s.to_string());
    let lines = |items: Vec<String>| Node::Leaf(items.join("\n"));
    let v4: Vec<&super::FixedAddress> = instance
        .addresses
        .iter()
        .filter(|a| a.ip.is_ipv4())
        .collect();
    let v6: Vec<String> = (instance.addresses.iter())
        .filter(|a| a.ip.is_ipv6())
        .map(|a| a.ip.to_string())
        .collect();
    let public: Vec<String> = instance
        .floating_ips
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut interface = vec![
        ("device-number", leaf("0")),
        ("local-hostname", leaf(&instance.hostname)),
        (
            "local-ipv4s",
            lines(v4.iter().map(|a| a.ip.to_string()).collect()),
        ),
        ("mac", leaf(&instance.mac)),
    ];
    if let Some(first) = v4.first() {
        interface.push((
            "subnet-ipv4-cidr-block",
            leaf(&first.cidr.trunc().to_string()),
        ));
    }
    if !v6.is_empty() {
        interface.push(("ipv6s", lines(v6.clone())));
    }
    if !public.is_empty() {
        interface.push(("public-ipv4s", lines(public.clone())));
    }
    let mut entries = vec![
        ("hostname", leaf(&instance.hostname)),
        ("instance-id", leaf(&instance.instance_id())),
        ("local-hostname", leaf(&instance.hostname)),
    ];
    if let Some(first) = v4.first() {
        entries.push(("local-ipv4", leaf(&first.ip.to_string())));
    }
    entries.push(("mac", leaf(&instance.mac)));
    entries.push((
        "network",
        dir(vec![(
            "interfaces",
            dir(vec![(
                "macs",
                Node::Dir(vec![(
                    instance.mac.clone(),
                    instance.mac.clone(),
                    dir(interface),
                )]),
            )]),
        )]),
    ));
    if let Some(first) = public.first() {
        entries.push(("public-ipv4", leaf(first)));
    }
    if !extras.ssh_keys.is_empty() {
        let keys = (extras.ssh_keys.iter().enumerate())
            .map(|(i, key)| {
                let node = Node::Dir(vec![(
                    "openssh-key".into(),
                    "openssh-key".into(),
                    leaf(key),
                )]);
                (i.to_string(), format!("{i}=key-{i}"), node)
            })
            .collect();
        entries.push(("public-keys", Node::Dir(keys)));
    }
    entries.push(("security-groups", lines(instance.security_groups.clone())));
    dir(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Key;
    use crate::metadata::FixedAddress;

    fn instance() -> Instance {
        Instance {
            port: Key::new("tenant-a", "web-1"),
            uuid: "0f9c2a4e-1b7d-4c1a-9e55-3b2d1c0a9f8e".into(),
            hostname: "web".into(),
            mac: "02:6e:f1:63:e6:55".into(),
            mtu: Some(1450),
            network: Key::new("tenant-a", "blue"),
            node: Some("node-1".into()),
            addresses: vec![
                FixedAddress {
                    subnet: Key::new("tenant-a", "blue-v4"),
                    ip: "10.10.0.11".parse().unwrap(),
                    cidr: "10.10.0.0/24".parse().unwrap(),
                    dhcp: true,
                    gateway: Some("10.10.0.1".parse().unwrap()),
                    dns: vec!["10.10.0.2".parse().unwrap()],
                    routes: vec![(
                        "10.20.0.0/16".parse().unwrap(),
                        "10.10.0.254".parse().unwrap(),
                    )],
                    ipv6_mode: None,
                },
                FixedAddress {
                    subnet: Key::new("tenant-a", "blue-v6"),
                    ip: "2001:db8::6e:f1ff:fe63:e655".parse().unwrap(),
                    cidr: "2001:db8::/64".parse().unwrap(),
                    dhcp: true,
                    gateway: None,
                    dns: vec![],
                    routes: vec![],
                    ipv6_mode: Some(neutrino_api::Ipv6Mode::Slaac),
                },
            ],
            floating_ips: vec!["203.0.113.7".parse().unwrap()],
            security_groups: vec!["web".into()],
            secret: Some("web-1".into()),
        }
    }

    fn extras() -> Extras {
        Extras {
            user_data: Some(b"#cloud-config\nhostname: web\n".to_vec()),
            ssh_keys: vec!["ssh-ed25519 AAAA ops@example".into()],
        }
    }

    fn text(path: &str, extras: &Extras) -> (u16, String) {
        let reply = reply(path, &instance(), extras);
        (reply.status, String::from_utf8(reply.body).unwrap())
    }

    fn json_at(path: &str) -> Value {
        let reply = reply(path, &instance(), &extras());
        assert_eq!(
            (reply.status, reply.content_type),
            (200, "application/json")
        );
        serde_json::from_slice(&reply.body).unwrap()
    }

    #[test]
    fn openstack_meta_data_names_the_instance_and_its_keys() {
        let meta = json_at("/openstack/latest/meta_data.json");
        assert_eq!(meta["uuid"], "0f9c2a4e-1b7d-4c1a-9e55-3b2d1c0a9f8e");
        assert_eq!(meta["hostname"], "web");
        assert_eq!(meta["project_id"], "tenant-a");
        assert_eq!(meta["public_keys"]["key-0"], "ssh-ed25519 AAAA ops@example");
        assert_eq!(meta["keys"][0]["type"], "ssh");
        assert_eq!(
            meta["meta"]["fixed_ips"],
            "10.10.0.11,2001:db8::6e:f1ff:fe63:e655"
        );
        assert_eq!(meta["meta"]["floating_ips"], "203.0.113.7");
        // Every listed version is the same document.
        assert_eq!(json_at("/openstack/2018-08-27/meta_data.json"), meta);
        let (status, listing) = text("/openstack", &extras());
        assert_eq!(status, 200);
        assert!(listing.ends_with("2018-08-27\nlatest"));
    }

    #[test]
    fn openstack_network_data_has_the_link_addresses_and_routes() {
        let network = json_at("/openstack/latest/network_data.json");
        assert_eq!(
            network["links"][0]["ethernet_mac_address"],
            "02:6e:f1:63:e6:55"
        );
        assert_eq!(network["links"][0]["mtu"], 1450);
        let v4 = &network["networks"][0];
        assert_eq!(v4["type"], "ipv4_dhcp");
        assert_eq!(v4["ip_address"], "10.10.0.11");
        assert_eq!(v4["netmask"], "255.255.255.0");
        assert_eq!(v4["link"], network["links"][0]["id"]);
        assert_eq!(
            v4["routes"],
            json!([
                {"network": "10.20.0.0", "netmask": "255.255.0.0", "gateway": "10.10.0.254"},
                {"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.10.0.1"},
            ])
        );
        assert_eq!(
            network["services"],
            json!([{"type": "dns", "address": "10.10.0.2"}])
        );
    }

    #[test]
    fn user_data_is_served_as_it_is_and_is_absent_without_a_secret() {
        let reply = reply("/openstack/latest/user_data", &instance(), &extras());
        assert_eq!(reply.body, b"#cloud-config\nhostname: web\n");
        assert_eq!(
            text("/latest/user-data", &extras()).1,
            "#cloud-config\nhostname: web\n"
        );
        let none = Extras::default();
        assert_eq!(text("/openstack/latest/user_data", &none).0, 404);
        assert_eq!(text("/latest/user-data", &none).0, 404);
        assert!(!text("/openstack/latest", &none).1.contains("user_data"));
        assert!(
            text("/openstack/latest/", &extras())
                .1
                .contains("user_data")
        );
    }

    #[test]
    fn the_ec2_tree_lists_and_serves_what_cloud_init_crawls() {
        let e = extras();
        let (_, listing) = text("/latest/meta-data/", &e);
        let entries: Vec<&str> = listing.lines().collect();
        assert_eq!(
            entries,
            [
                "hostname",
                "instance-id",
                "local-hostname",
                "local-ipv4",
                "mac",
                "network/",
                "public-ipv4",
                "public-keys/",
                "security-groups"
            ]
        );
        assert_eq!(
            text("/2009-04-04/meta-data/instance-id", &e).1,
            "i-0f9c2a4e1b7d4c1a9"
        );
        assert_eq!(text("/latest/meta-data/local-ipv4", &e).1, "10.10.0.11");
        assert_eq!(text("/latest/meta-data/public-ipv4", &e).1, "203.0.113.7");
        assert_eq!(text("/latest/meta-data/public-keys", &e).1, "0=key-0");
        assert_eq!(
            text("/latest/meta-data/public-keys/0/", &e).1,
            "openssh-key"
        );
        assert_eq!(
            text("/latest/meta-data/public-keys/0/openssh-key", &e).1,
            "ssh-ed25519 AAAA ops@example"
        );
        let mac = "/latest/meta-data/network/interfaces/macs/02:6e:f1:63:e6:55";
        assert_eq!(
            text(&format!("{mac}/subnet-ipv4-cidr-block"), &e).1,
            "10.10.0.0/24"
        );
        assert_eq!(text(&format!("{mac}/local-ipv4s"), &e).1, "10.10.0.11");
        assert_eq!(text("/latest/meta-data/security-groups", &e).1, "web");
    }

    #[test]
    fn unknown_paths_and_versions_are_not_found() {
        let e = extras();
        for path in [
            "/nope",
            "/latest/meta-data/nope",
            "/latest/meta-data/hostname/deeper",
            "/openstack/1999-01-01/meta_data.json",
            "/openstack/latest/password",
            "/2009-4-4/meta-data/hostname",
        ] {
            assert_eq!(text(path, &e).0, 404, "{path}");
        }
        assert_eq!(text("/latest/meta-data/hostname?x=1", &e).1, "web");
    }
}
