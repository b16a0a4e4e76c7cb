//! Choosing the tunnel endpoint on a node with two NICs, against a real
//! kernel: a management NIC with the default route and an underlay NIC
//! with its own subnet and a route to the remote racks.

mod support;

use std::net::IpAddr;
use std::process::Command;

use neutrino::core::tunnel::EndpointRule;
use neutrino::dataplane::tunnel::{TunnelError, endpoint};
use support::{Namespaces, require_root};

fn ip(namespace: &str, args: &str) {
    let status = Command::new("ip")
        .args(["-n", namespace])
        .args(args.split_whitespace())
        .status()
        .unwrap();
    assert!(status.success(), "ip -n {namespace} {args}");
}

/// `node` with eth0 (management, default route) and ens4 (underlay), each a
/// veth to `peer`.
fn two_nic_node(spaces: &mut Namespaces) -> String {
    let node = spaces.create("node");
    let peer = spaces.create("peer");
    for (nic, far, address, gateway) in [
        ("eth0", "m0", "192.168.1.10/24", "192.168.1.1/24"),
        ("ens4", "u0", "10.0.0.5/24", "10.0.0.1/24"),
    ] {
        ip(
            &node,
            &format!("link add {nic} type veth peer name {far} netns {peer}"),
        );
        ip(&node, &format!("addr add {address} dev {nic}"));
        ip(&node, &format!("link set {nic} up"));
        ip(&peer, &format!("addr add {gateway} dev {far}"));
        ip(&peer, &format!("link set {far} up"));
    }
    ip(&node, "-6 addr add 2001:db8:1::5/64 dev ens4 nodad");
    ip(&node, "route add default via 192.168.1.1");
    ip(&node, "route add 172.16.0.0/16 via 10.0.0.1");
    node
}

async fn chosen(node: &str, rule: &str) -> Result<(IpAddr, String), TunnelError> {
    let rule: EndpointRule = rule.parse().unwrap();
    endpoint(Some(node), &rule)
        .await
        .map(|(ip, why)| (ip, format!("{} on {}", why.rule, why.interface)))
}

#[tokio::test]
async fn every_rule_picks_the_address_an_operator_means() {
    require_root();
    let mut spaces = Namespaces::new("tunnel");
    let node = two_nic_node(&mut spaces);
    let on = |address: &str, why: &str| (address.parse::<IpAddr>().unwrap(), why.to_string());

    for (rule, address, why) in [
        ("default-route", "192.168.1.10", "default-route on eth0"),
        ("interface=ens4", "10.0.0.5", "interface=ens4 on ens4"),
        (
            "interface=ens[0-9]+|eth1",
            "10.0.0.5",
            "interface=ens[0-9]+|eth1 on ens4",
        ),
        ("cidr=10.0.0.0/8", "10.0.0.5", "cidr=10.0.0.0/8 on ens4"),
        (
            "cidr=2001:db8:1::/48",
            "2001:db8:1::5",
            "cidr=2001:db8:1::/48 on ens4",
        ),
        (
            "can-reach=172.16.3.4",
            "10.0.0.5",
            "can-reach=172.16.3.4 on ens4",
        ),
        (
            "can-reach=10.0.0.77",
            "10.0.0.5",
            "can-reach=10.0.0.77 on ens4",
        ),
        (
            "can-reach=203.0.113.9",
            "192.168.1.10",
            "can-reach=203.0.113.9 on eth0",
        ),
        ("address=10.0.0.5", "10.0.0.5", "address=10.0.0.5 on ens4"),
    ] {
        assert_eq!(
            chosen(&node, rule).await.unwrap(),
            on(address, why),
            "{rule}"
        );
    }
}

#[tokio::test]
async fn a_rule_nothing_satisfies_says_so() {
    require_root();
    let mut spaces = Namespaces::new("tunnel");
    let node = two_nic_node(&mut spaces);
    ip(&node, "route del default");
    for (rule, message) in [
        (
            "default-route",
            "tunnel endpoint default-route: there is no default route",
        ),
        (
            "can-reach=203.0.113.9",
            "tunnel endpoint can-reach=203.0.113.9: no route to 203.0.113.9",
        ),
        (
            "interface=eth1",
            "tunnel endpoint interface=eth1: no interface with a global address matches",
        ),
        (
            "cidr=172.16.0.0/12",
            "tunnel endpoint cidr=172.16.0.0/12: no address of this node is inside",
        ),
        (
            "address=10.0.0.6",
            "tunnel endpoint address=10.0.0.6: 10.0.0.6 is not an address of this node",
        ),
    ] {
        let error = chosen(&node, rule).await.unwrap_err();
        assert_eq!(error.to_string(), message);
    }
}
