//! Properties of allocation: never a duplicate, never outside the pools,
//! the same result when replayed, and releases that disturb no one else.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::net::IpAddr;

use neutrino::api::{
    AllocationPool, FixedIP, Network, NetworkSpec, NetworkType, Port, PortSpec, Subnet, SubnetSpec,
};
use neutrino::core::{ClusterConfig, Key, Object, Reason, Snapshot, resolve, status};

const NS: &str = "t";

fn named<T: kube::Resource>(mut object: T) -> T {
    object.meta_mut().namespace = Some(NS.into());
    object
}

fn network() -> Object {
    Object::Network(named(Network::new(
        "net",
        NetworkSpec {
            network_type: NetworkType::Vxlan,
            segmentation_id: None,
            physical_network: None,
            mtu: None,
            external: false,
        },
    )))
}

fn subnet(cidr: &str, pool: Option<(IpAddr, IpAddr)>) -> Object {
    Object::Subnet(named(Subnet::new(
        "sub",
        SubnetSpec {
            network: "net".into(),
            cidr: cidr.into(),
            gateway_ip: None,
            allocation_pools: pool
                .map(|(s, e)| AllocationPool {
                    start: s.to_string(),
                    end: e.to_string(),
                })
                .into_iter()
                .collect(),
            dns_nameservers: vec![],
            host_routes: vec![],
            enable_dhcp: true,
            ipv6_address_mode: None,
            ipv6_ra_mode: None,
        },
    )))
}

fn port(i: usize, fixed: Option<IpAddr>) -> Object {
    Object::Port(named(Port::new(
        &format!("p{i:03}"),
        PortSpec {
            network: "net".into(),
            fixed_ips: vec![FixedIP {
                subnet: "sub".into(),
                ip_address: fixed.map(|a| a.to_string()),
            }],
            mac_address: None,
            security_groups: vec![],
            port_security: true,
            allowed_address_pairs: vec![],
            node_name: Some("node-1".into()),
            hostname: None,
            metadata_secret_name: None,
        },
    )))
}

fn nth(base: IpAddr, n: u128) -> IpAddr {
    match base {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) + n as u32).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) + n).into()),
    }
}

/// A subnet of 16-64 addresses, maybe a pool inside it, and ports that
/// mostly take any address and sometimes ask for one (collisions included).
#[derive(Debug, Clone)]
struct Case {
    cidr: String,
    base: IpAddr,
    pool: Option<(u128, u128)>,
    fixed: Vec<Option<u128>>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<bool>(),
        26u8..=28,
        proptest::option::of((1u128..8, 0u128..8)),
        proptest::collection::vec(proptest::option::weighted(0.3, 0u128..64), 0..50),
    )
        .prop_map(|(v6, prefix, pool, fixed)| {
            let (cidr, base): (String, IpAddr) = if v6 {
                (
                    format!("2001:db8::/{}", prefix + 96),
                    "2001:db8::".parse().unwrap(),
                )
            } else {
                (format!("10.0.0.0/{prefix}"), "10.0.0.0".parse().unwrap())
            };
            let size = 1u128 << (32 - prefix);
            let pool = pool.map(|(start, len)| (start + 1, (start + 1 + len).min(size - 2)));
            let fixed = fixed.into_iter().map(|f| f.map(|o| o % size)).collect();
            Case {
                cidr,
                base,
                pool,
                fixed,
            }
        })
}

fn snapshot(case: &Case) -> Snapshot {
    let mut s = Snapshot::default();
    s.insert(network()).unwrap();
    let pool = case
        .pool
        .map(|(a, b)| (nth(case.base, a), nth(case.base, b)));
    s.insert(subnet(&case.cidr, pool)).unwrap();
    for (i, fixed) in case.fixed.iter().enumerate() {
        s.insert(port(i, fixed.map(|o| nth(case.base, o)))).unwrap();
    }
    s
}

fn addresses(s: &Snapshot, config: &ClusterConfig) -> Vec<(Key, Option<IpAddr>)> {
    let r = resolve(s, config);
    r.ports
        .iter()
        .map(|(k, v)| (k.clone(), v.as_ref().ok().map(|p| p.fixed_ips[0].1)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn never_a_duplicate_never_outside_the_pools(case in case()) {
        let config = ClusterConfig::default();
        let s = snapshot(&case);
        let r = resolve(&s, &config);
        let Some(sub) = r.subnet(&Key::new(NS, "sub")) else {
            // Fixed addresses took the whole pool before the DHCP server
            // could have one: the subnet, and so every port, is not ready.
            prop_assert_eq!(r.subnets[&Key::new(NS, "sub")].as_ref().unwrap_err()[0].reason, Reason::Exhausted);
            prop_assert!(r.ports.values().all(Result::is_err));
            return Ok(());
        };
        let mut seen: BTreeSet<IpAddr> = sub.gateway.into_iter().chain(sub.dhcp).collect();
        prop_assert_eq!(seen.len(), 2, "gateway and DHCP server differ");
        let in_pools = |a: IpAddr| sub.pools.iter().any(|(s, e)| (*s..=*e).contains(&a));
        let macs: BTreeSet<_> = r.ready_ports().map(|(_, p)| p.mac).collect();
        prop_assert_eq!(macs.len(), r.ready_ports().count(), "MACs are unique on a network");
        prop_assert!(macs.iter().all(|m| m.0[0] & 0b11 == 0b10), "locally administered unicast");
        prop_assert!(in_pools(sub.dhcp.unwrap()));
        for (i, fixed) in case.fixed.iter().enumerate() {
            let key = Key::new(NS, format!("p{i:03}"));
            match &r.ports[&key] {
                Ok(p) => {
                    let address = p.fixed_ips[0].1;
                    prop_assert!(seen.insert(address), "{} handed out twice", address);
                    match fixed {
                        Some(o) => prop_assert_eq!(address, nth(case.base, *o)),
                        None => prop_assert!(in_pools(address), "{} outside the pools", address),
                    }
                }
                Err(problems) => {
                    let reason = problems[0].reason;
                    match fixed {
                        Some(_) => prop_assert!(matches!(reason, Reason::InUse | Reason::InvalidSpec), "{:?}", problems),
                        None => {
                            prop_assert_eq!(reason, Reason::Exhausted, "{:?}", problems);
                            prop_assert_eq!(sub.free, 0);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn replay_is_stable_and_release_disturbs_no_one(case in case(), victim in any::<prop::sample::Index>()) {
        let config = ClusterConfig::default();
        let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let mut s = snapshot(&case);
        let first = addresses(&s, &config);
        prop_assert_eq!(&first, &addresses(&s, &config), "deterministic");
        let resolution = resolve(&s, &config);
        status::apply(&mut s, &resolution, &now);
        prop_assert_eq!(&first, &addresses(&s, &config), "replaying recorded statuses changes nothing");

        // Delete one port: everyone else keeps their address, and a new port
        // can take the one released.
        let ready: Vec<&(Key, Option<IpAddr>)> = first.iter().filter(|(_, a)| a.is_some()).collect();
        if ready.is_empty() {
            return Ok(());
        }
        let (gone, freed) = ready[victim.index(ready.len())].clone();
        s.ports.remove(&gone);
        let after = addresses(&s, &config);
        for (key, address) in &after {
            let before = first.iter().find(|(k, _)| k == key).unwrap();
            if before.1.is_some() {
                prop_assert_eq!(address, &before.1, "{} moved", key);
            }
        }
        let freed = freed.unwrap();
        if let Some((waiting, _)) = after.iter().find(|(_, a)| *a == Some(freed)) {
            // A port that had asked for this very address takes it now.
            let before = first.iter().find(|(k, _)| k == waiting).unwrap();
            prop_assert!(before.1.is_none(), "{} took {} from {}", waiting, freed, gone);
            return Ok(());
        }
        let wanted = (0..256u128).find(|o| nth(case.base, *o) == freed).unwrap();
        s.insert(port(999, Some(nth(case.base, wanted)))).unwrap();
        let r = resolve(&s, &config);
        prop_assert!(r.ports[&Key::new(NS, "p999")].is_ok(), "the released address is free again: {:?}", r.ports[&Key::new(NS, "p999")]);
    }
}

fn vxlan(i: usize, vni: Option<u32>) -> Object {
    Object::Network(named(Network::new(
        &format!("n{i:03}"),
        NetworkSpec {
            network_type: NetworkType::Vxlan,
            segmentation_id: vni,
            physical_network: None,
            mtu: None,
            external: false,
        },
    )))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn vnis_are_unique_within_the_range_and_stable(requests in proptest::collection::vec(proptest::option::weighted(0.3, 995u32..1025), 0..40)) {
        let mut config = ClusterConfig::default();
        config.vni_ranges = vec![neutrino::core::config::IdRange { min: 1000, max: 1019 }];
        let mut s = Snapshot::default();
        for (i, vni) in requests.iter().enumerate() {
            s.insert(vxlan(i, *vni)).unwrap();
        }
        let r = resolve(&s, &config);
        let mut seen = BTreeSet::new();
        for (key, verdict) in &r.networks {
            match verdict {
                Ok(n) => {
                    let vni = n.segmentation_id.unwrap();
                    prop_assert!((1000..=1019).contains(&vni), "{} got {}", key, vni);
                    prop_assert!(seen.insert(vni), "{} handed out twice", vni);
                }
                Err(p) => prop_assert!(matches!(p[0].reason, Reason::InUse | Reason::OutOfRange | Reason::Exhausted), "{:?}", p),
            }
        }
        let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        status::apply(&mut s, &r, &now);
        let again = resolve(&s, &config);
        for (key, verdict) in &r.networks {
            prop_assert_eq!(verdict.as_ref().ok(), again.networks[key].as_ref().ok());
        }
    }
}
