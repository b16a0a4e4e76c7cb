//! What the examples promise, checked on a running lab — the same checks
//! whether the lab runs alone or with a real cluster in the middle.

use neutrino::core::Key;
use neutrino::dataplane::netns;
use neutrino::lab::Summary;

use super::{TestLab, port_mac};

/// The folder of an example.
pub fn example(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

/// One node's plan of an example, with the default cluster.
pub fn node_plan(name: &str, node: &str) -> neutrino::core::plan::NodePlan {
    let snapshot = neutrino::manifest::load(&example(name)).unwrap().snapshot;
    let config = neutrino::core::ClusterConfig::default();
    neutrino::core::plan::plan_node(
        &neutrino::core::resolve(&snapshot, &config),
        &config,
        config.node(node).unwrap(),
    )
}

fn neighbour_mac(lab: &TestLab, from: &str, ip: &str) -> String {
    lab.exec(from, &["ip", "neigh", "show", ip]).1
}

/// quickstart: the two ports reach each other across nodes, with the
/// subnet's gateway as their default route, and web-1 reads its own
/// hostname, address and key from the metadata service.
pub fn quickstart_ports_meet(lab: &TestLab, summary: &Summary) {
    let web1 = summary.workloads["tenant-a/web-1"].lease.clone().unwrap();
    let web2 = summary.workloads["tenant-a/web-2"].lease.clone().unwrap();
    assert!(lab.pings("tenant-a/web-1", &web2.ip));
    let (code, text) = lab.exec("tenant-a/web-1", &["ip", "route"]);
    assert_eq!(code, 0);
    assert!(text.contains("default via 10.10.0.1"), "{text}");
    let url = "http://169.254.169.254/openstack/latest/meta_data.json";
    let (code, text) = lab.exec("tenant-a/web-1", &["curl", "-sS", "-m", "5", url]);
    assert_eq!(code, 0, "{text}");
    let meta: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(meta["hostname"], "web-1");
    assert_eq!(meta["meta"]["fixed_ips"], web1.ip.as_str());
    assert!(
        meta["public_keys"]["key-0"]
            .as_str()
            .is_some_and(|k| k.ends_with(" ops@example")),
        "{meta}"
    );
}

/// overlapping-tenants: each tenant's vm-1 reaches its own vm-2 at the
/// address both tenants use, never the other's.
pub fn overlapping_tenants_stay_apart(lab: &TestLab) {
    for tenant in ["tenant-a", "tenant-b"] {
        let from = format!("{tenant}/vm-1");
        assert!(lab.pings(&from, "10.0.0.11"), "{tenant}");
        let mac = port_mac(lab, &format!("{tenant}/vm-2"));
        assert!(
            neighbour_mac(lab, &from, "10.0.0.11").contains(&mac),
            "{tenant} reached its own vm-2"
        );
    }
}

/// three-tier: the router joins the tiers, the security groups decide who
/// talks, the floating IP answers from outside and SNAT takes the tiers out.
pub async fn three_tier_routes_filters_and_translates(lab: &TestLab, summary: &Summary) {
    let ip = |port: &str| summary.workloads[port].lease.clone().unwrap().ip;
    let (web, app, db) = (ip("shop/web-1"), ip("shop/app-1"), ip("shop/db-1"));

    // The router joins the tiers; the security groups decide who talks.
    assert!(lab.pings("shop/web-1", &app), "app takes ICMP from web");
    assert!(!lab.pings("shop/web-1", &db), "db takes nothing from web");
    assert!(lab.pings("shop/app-1", &db), "db takes ICMP from app");
    assert!(lab.pings("shop/db-1", &web), "web takes ICMP from anyone");
    assert!(!lab.pings("shop/db-1", &app), "app takes nothing from db");
    let (_, refused) = lab.exec(
        "shop/app-1",
        &[
            "bash",
            "-c",
            &format!("timeout 3 bash -c 'echo > /dev/tcp/{web}/80'"),
        ],
    );
    assert!(
        refused.contains("Connection refused"),
        "TCP 80 reaches web (nothing listens): {refused}"
    );
    let (_, dropped) = lab.exec(
        "shop/app-1",
        &[
            "bash",
            "-c",
            &format!("timeout 3 bash -c 'echo > /dev/tcp/{web}/22' ; echo exit=$?"),
        ],
    );
    assert!(
        dropped.contains("exit=124"),
        "TCP 22 to web is dropped, not refused: {dropped}"
    );

    // The floating IP reaches web from outside; SNAT takes the tiers out.
    let outside = lab.lab.outside_namespace().unwrap();
    let ping = |from: &str, ip: &str| {
        netns::command(from, "ping")
            .unwrap()
            .args(["-c", "2", "-i", "0.2", "-W", "1", ip])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(ping(&outside, "203.0.113.100"), "the floating IP answers");
    assert!(
        !ping(&outside, &web),
        "fixed IPs are not reachable from outside"
    );
    assert!(
        lab.pings("shop/app-1", "203.0.113.1"),
        "SNAT out of the gateway"
    );
    let snapshot = lab.lab.objects().await.unwrap();
    let router = snapshot.routers[&Key::new("shop", "edge")]
        .status
        .clone()
        .unwrap();
    let gateway = router.external_gateway.unwrap().ip_address;
    let node = router.node.unwrap();
    let namespace = format!(
        "{}-{}",
        lab.node(&node),
        neutrino::core::names::router_namespace(&Key::new("shop", "edge"))
    );
    let counters = netns::command(&namespace, "iptables")
        .unwrap()
        .args(["-t", "nat", "-L", "POSTROUTING", "-v", "-n"])
        .output()
        .unwrap();
    let counters = String::from_utf8_lossy(&counters.stdout);
    let snat = counters
        .lines()
        .find(|l| l.contains("10.20.2.0/24") && l.contains(&gateway))
        .unwrap_or_else(|| panic!("{counters}"));
    let packets: u64 = snat.split_whitespace().next().unwrap().parse().unwrap();
    assert!(packets > 0, "app's traffic left as {gateway}: {counters}");
}

/// dual-stack: web takes its IPv6 address by SLAAC, db by DHCPv6, each the
/// one its Port's allocation says; the router is both workloads' IPv6
/// default router, from its advertisements; they reach each other over
/// both families, both ways, through the router.
pub fn dual_stack_routes_both_families(
    lab: &TestLab,
    summary: &Summary,
    allocated: &dyn Fn(&str) -> Vec<String>,
) {
    let lease = |port: &str| summary.workloads[port].lease.clone().unwrap();
    let (web, db) = (lease("dual/web"), lease("dual/db"));
    let v6 = |lease: &neutrino::lab::state::Lease| -> (String, String) {
        assert_eq!(lease.ipv6.len(), 1, "{lease:?}");
        (lease.ipv6[0].address.clone(), lease.ipv6[0].by.clone())
    };
    let (web6, web_by) = v6(&web);
    let (db6, db_by) = v6(&db);
    assert_eq!(web_by, "SLAAC");
    assert_eq!(db_by, "DHCPv6");
    assert!(
        allocated("dual/web").contains(&web6),
        "{web6}: {:?}",
        allocated("dual/web")
    );
    assert!(
        allocated("dual/db").contains(&db6),
        "{db6}: {:?}",
        allocated("dual/db")
    );
    assert_eq!(db.ipv6[0].dns, "2001:db8:30:2::53");
    // A port that took DHCPv6 before the router's advertiser was up hears
    // the router at its next advertisement (every 10 s).
    for port in ["dual/web", "dual/db"] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(12);
        let routes = loop {
            let (code, routes) = lab.exec(port, &["ip", "-6", "route", "show", "default"]);
            assert_eq!(code, 0);
            if routes.contains("via fe80::") || std::time::Instant::now() >= deadline {
                break routes;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        };
        assert!(
            routes.contains("via fe80::") && routes.contains("proto ra"),
            "{port}: {routes}"
        );
    }
    let ping = |from: &str, to: &str| {
        lab.exec(from, &["ping", "-c", "2", "-i", "0.2", "-W", "2", to])
            .0
            == 0
    };
    assert!(ping("dual/web", &db6), "web to db over IPv6");
    assert!(ping("dual/db", &web6), "db to web over IPv6");
    // The router is on one node, one of the two on the other: with the
    // router forgotten, each resolves the router's link-local address (its
    // default route) again, across nodes through the VXLAN link's table.
    // None of forty pings may be lost to it.
    for (from, to) in [("dual/web", &db6), ("dual/db", &web6)] {
        let (_, route) = lab.exec(from, &["ip", "-6", "route", "show", "default"]);
        let router = route.split_whitespace().skip_while(|w| *w != "via").nth(1);
        let router = router.unwrap_or_else(|| panic!("{from} has no default router: {route}"));
        let (code, out) = lab.exec(from, &["ip", "-6", "neigh", "del", router, "dev", "eth0"]);
        assert_eq!(code, 0, "{out}");
        let (code, out) = lab.exec(from, &["ping", "-c", "40", "-i", "0.05", "-W", "1", to]);
        assert!(
            code == 0 && out.contains(" 0% packet loss"),
            "{from} to {to} through the router lost pings:\n{out}"
        );
    }
    assert!(ping("dual/web", &db.ip), "web to db over IPv4");
    assert!(ping("dual/db", &web.ip), "db to web over IPv4");
}
