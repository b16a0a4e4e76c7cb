//! The agent's order of work and its resyncs, over fake backends that
//! behave as the kernel does where order matters (see
//! `dataplane::fake`): no root, no kernel.

use std::time::Duration;

mod support;

use neutrino::core::dnsmasq::DhcpChange;
use neutrino::core::inside::InsideChange;
use neutrino::core::plan::{NodePlan, SecurityPlan, UplinkKind};
use neutrino::core::xtables::Choice;
use neutrino::dataplane::agent::{Agent, AgentConfig};
use neutrino::dataplane::fake::Fake;
use support::examples::node_plan;

fn agent(fake: &Fake) -> Agent<Fake> {
    fake.agent(AgentConfig {
        netns: None,
        namespace_prefix: String::new(),
        state_dir: "/fake".into(),
        iptables: Choice::Auto,
        drift_check: Duration::ZERO,
    })
}

/// A node with a router and DHCP servers, three-tier's first, and a fake
/// kernel with the NIC its flat external network uses.
fn router_node() -> (Fake, NodePlan) {
    let plan = node_plan("three-tier", "node-1");
    assert!(!plan.routers.is_empty() && !plan.dhcp.is_empty());
    let nics = plan.uplinks.iter().filter_map(|u| match &u.kind {
        UplinkKind::Flat { interface } => Some(interface.as_str()),
        _ => None,
    });
    (Fake::with_interfaces(nics), plan)
}

fn position(journal: &[String], wanted: impl Fn(&str) -> bool, what: &str) -> usize {
    journal
        .iter()
        .position(|line| wanted(line))
        .unwrap_or_else(|| panic!("no {what} in {journal:#?}"))
}

#[tokio::test]
async fn a_fresh_node_is_built_in_the_order_the_kernel_needs() {
    let (fake, plan) = router_node();
    let report = agent(&fake).apply(plan.clone()).await;
    // The fake refuses what the kernel would: a veth end into a namespace
    // not yet made, a route before its next hop is connected, a server
    // with nothing to bind to, NAT in a namespace that is not there.
    assert!(
        report.is_clean(),
        "{:#?} {:#?}",
        report.errors,
        report.conflicts
    );
    let journal = fake.take_journal();
    for dhcp in &plan.dhcp {
        let namespace = &dhcp.namespace;
        let created = position(
            &journal,
            |l| l == format!("namespaces: create {namespace}"),
            "namespace",
        );
        let veth = position(
            &journal,
            |l| l.starts_with("links: Create") && l.contains(&format!("{namespace:?}")),
            "veth into it",
        );
        let address = position(
            &journal,
            |l| l.starts_with(&format!("inside {namespace}: AddAddress")),
            "address",
        );
        let started = position(
            &journal,
            |l| l.starts_with("dhcp: Start") && l.contains(&format!("{namespace:?}")),
            "server start",
        );
        assert!(
            created < veth && veth < address && address < started,
            "{journal:#?}"
        );
    }
    assert_eq!(
        report.namespaces_created.len(),
        plan.dhcp.len() + plan.routers.len()
    );
    assert_eq!(report.dhcp.started.len(), plan.dhcp.len());
    assert_eq!(
        report.writes,
        journal
            .iter()
            .filter(|l| !l.starts_with("dhcp:") && !l.starts_with("namespaces:"))
            .count()
    );
}

#[tokio::test]
async fn a_resync_with_nothing_changed_writes_nothing() {
    let (fake, plan) = router_node();
    let agent = agent(&fake);
    assert!(agent.apply(plan.clone()).await.is_clean());
    fake.take_journal();
    let again = agent.apply(plan.clone()).await;
    assert!(again.is_clean(), "{:#?}", again.errors);
    assert_eq!(again.writes, 0);
    assert_eq!(again.dhcp, Default::default());
    assert!(again.namespaces_created.is_empty() && again.namespaces_removed.is_empty());
    assert_eq!(fake.take_journal(), Vec::<String>::new());
}

#[tokio::test]
async fn drift_in_every_backend_is_put_back_and_nothing_else_is_touched() {
    let (fake, plan) = router_node();
    let agent = agent(&fake);
    assert!(agent.apply(plan.clone()).await.is_clean());
    fake.take_journal();

    let dhcp = &plan.dhcp[0];
    let router = &plan.routers[0];
    let (fdb, address, route, host) = {
        let mut world = fake.world();
        let fdb = world.node.fdb.remove(0);
        let inside = world.namespaces.get_mut(&dhcp.namespace).unwrap();
        let address = inside
            .interfaces
            .get_mut(&dhcp.interface)
            .unwrap()
            .addresses
            .remove(0);
        let route = world
            .namespaces
            .get_mut(&router.namespace)
            .unwrap()
            .routes
            .remove(0);
        // A host lost from the server's hosts file.
        let server = world.dhcp.get_mut(&dhcp.namespace).unwrap();
        let host = server.listed.keys().next().unwrap().clone();
        let line = server.listed.remove(&host).unwrap();
        (fdb, address, route, (host, line))
    };

    let report = agent.apply(plan.clone()).await;
    assert!(report.is_clean(), "{:#?}", report.errors);
    let (host, line) = host;
    assert_eq!(
        fake.take_journal(),
        vec![
            format!("links: fdb add {fdb:?}"),
            format!(
                "inside {}: {:?}",
                dhcp.namespace,
                InsideChange::AddAddress(dhcp.interface.clone(), address)
            ),
            format!(
                "inside {}: {:?}",
                router.namespace,
                InsideChange::AddRoute(route)
            ),
            format!(
                "dhcp: {:?}",
                DhcpChange::AddHost {
                    namespace: dhcp.namespace.clone(),
                    name: host,
                    content: line,
                }
            ),
        ]
    );
    assert_eq!(report.writes, 3, "the host file is not a kernel write");
    assert_eq!(report.dhcp, Default::default(), "no restart, no reload");
}

#[tokio::test]
async fn an_emptied_node_stops_its_servers_before_their_namespaces_go() {
    let (fake, plan) = router_node();
    let agent = agent(&fake);
    assert!(agent.apply(plan.clone()).await.is_clean());
    fake.take_journal();

    let nothing = NodePlan {
        bridges: vec![],
        uplinks: vec![],
        fdb: vec![],
        neighbours: vec![],
        ports: vec![],
        dhcp: vec![],
        routers: vec![],
        security: SecurityPlan::default(),
        ..plan.clone()
    };
    let report = agent.apply(nothing).await;
    assert!(report.is_clean(), "{:#?}", report.errors);
    let journal = fake.take_journal();
    for dhcp in &plan.dhcp {
        let stopped = position(
            &journal,
            |l| l.starts_with("dhcp: Stop") && l.contains(&format!("{:?}", dhcp.namespace)),
            "server stop",
        );
        let removed = position(
            &journal,
            |l| l == format!("namespaces: delete {}", dhcp.namespace),
            "namespace removal",
        );
        assert!(stopped < removed, "{journal:#?}");
    }
    let world = fake.world();
    assert!(
        world.node.links.iter().all(|l| !l.is_ours()),
        "{:#?}",
        world.node.links
    );
    assert!(world.node.fdb.is_empty() && world.node.neighbours.is_empty());
    assert!(world.namespaces.is_empty() && world.dhcp.is_empty());
    assert!(world.rules.is_none() && world.nat.is_empty());
}

/// A port's veth that cannot be made is named in the report as a link, so
/// that the CNI socket leaves that port unplugged and plugs the others.
#[tokio::test]
async fn a_link_that_cannot_be_made_is_named_in_the_report() {
    let (fake, plan) = router_node();
    let port = &plan.ports[0];
    let create = format!("links: Create(DesiredLink {{ name: {:?}", port.interface);
    fake.world().broken.push(create);
    let report = agent(&fake).apply(plan.clone()).await;
    assert_eq!(
        report.failed_links,
        std::collections::BTreeSet::from([port.interface.clone()]),
        "{:#?}",
        report.errors
    );
    let world = fake.world();
    for other in &plan.ports[1..] {
        assert!(world.node.links.iter().any(|l| l.name == other.interface));
    }
}

#[tokio::test]
async fn one_broken_server_is_reported_by_its_subnet_and_blocks_nothing_else() {
    let (fake, plan) = router_node();
    let broken = &plan.dhcp[0];
    let start = format!("dhcp: Start {{ namespace: {:?}", broken.namespace);
    fake.world().broken.push(start.clone());
    let agent = agent(&fake);
    let report = agent.apply(plan.clone()).await;
    assert_eq!(report.errors.len(), 1, "{:#?}", report.errors);
    let prefix = format!(
        "DHCP server of subnet {} in {}: starting dnsmasq: ",
        broken.subnet, broken.namespace
    );
    assert!(
        report.errors[0].starts_with(&prefix) && report.errors[0].ends_with("refused"),
        "{}",
        report.errors[0]
    );
    let others: Vec<&str> = plan.dhcp[1..]
        .iter()
        .map(|d| d.namespace.as_str())
        .collect();
    assert_eq!(report.dhcp.started, others);
    {
        let world = fake.world();
        assert!(world.rules.is_some() && world.nat.len() == plan.routers.len());
        assert!(world.namespaces[&broken.namespace].interfaces[&broken.interface].up);
    }

    // Mended, the next resync starts exactly that server, its hosts listed
    // afresh first as for any start.
    fake.world().broken.clear();
    fake.take_journal();
    let report = agent.apply(plan.clone()).await;
    assert!(report.is_clean(), "{:#?}", report.errors);
    let journal = fake.take_journal();
    assert_eq!(journal.len(), 2, "{journal:#?}");
    let list = format!("dhcp: ListHosts {{ namespace: {:?}", broken.namespace);
    assert!(journal[0].starts_with(&list), "{journal:#?}");
    assert!(journal[1].starts_with(&start), "{journal:#?}");
    assert_eq!(report.dhcp.started, vec![broken.namespace.clone()]);
}

#[tokio::test]
async fn between_drift_checks_only_a_namespace_whose_plan_changed_is_read() {
    let (fake, mut plan) = router_node();
    let agent = fake.agent(AgentConfig {
        netns: None,
        namespace_prefix: String::new(),
        state_dir: "/fake".into(),
        iptables: Choice::Auto,
        drift_check: Duration::from_secs(3600),
    });
    assert!(agent.apply(plan.clone()).await.is_clean());
    let dhcp = plan.dhcp[0].clone();
    // Drift inside the DHCP namespace waits for the next drift check ...
    let lost = fake
        .world()
        .namespaces
        .get_mut(&dhcp.namespace)
        .unwrap()
        .interfaces
        .get_mut(&dhcp.interface)
        .unwrap()
        .addresses
        .remove(0);
    // ... while a change to the router's plan reaches its namespace at once.
    let mut extra = plan.routers[0]
        .routes
        .first()
        .cloned()
        .expect("three-tier's router has a route");
    extra.destination = "192.0.2.0/24".parse().unwrap();
    plan.routers[0].routes.push(extra.clone());
    fake.take_journal();
    let report = agent.apply(plan.clone()).await;
    assert!(report.is_clean(), "{:#?}", report.errors);
    let world = fake.world();
    assert!(
        world.namespaces[&plan.routers[0].namespace]
            .routes
            .iter()
            .any(|r| format!("{r:?}").contains("192.0.2.0/24")),
        "{:#?}",
        world.journal
    );
    let addresses = &world.namespaces[&dhcp.namespace].interfaces[&dhcp.interface].addresses;
    assert!(!addresses.contains(&lost), "read before its drift check");
}
