//! Every example plans cleanly for every node, its objects pass the CRDs'
//! CEL rules, and its plans match the reviewed snapshots.

use std::path::{Path, PathBuf};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::core::cel::validate_cel;
use neutrino::core::plan::{plan_node, render};
use neutrino::core::{ClusterConfig, resolve, status};
use neutrino::manifest::{Manifests, load};

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    found.sort();
    found
}

fn name(dir: &Path) -> String {
    dir.file_name().unwrap().to_string_lossy().into_owned()
}

fn load_example(dir: &Path) -> Manifests {
    load(dir).unwrap_or_else(|e| panic!("{}: {e:?}", dir.display()))
}

#[test]
fn the_four_examples_exist() {
    let names: Vec<String> = examples().iter().map(|d| name(d)).collect();
    for wanted in [
        "quickstart",
        "three-tier",
        "provider-vlan",
        "overlapping-tenants",
    ] {
        assert!(
            names.iter().any(|n| n == wanted),
            "examples/{wanted} is missing"
        );
    }
}

#[test]
fn every_example_plans_for_every_node() {
    let config = ClusterConfig::default();
    for dir in examples() {
        let manifests = load_example(&dir);
        let resolution = resolve(&manifests.snapshot, &config);
        let problems: Vec<String> = resolution
            .problems()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(problems.is_empty(), "{}: {problems:#?}", dir.display());
        for node in &config.nodes {
            let plan = plan_node(&resolution, &config, node);
            insta::assert_yaml_snapshot!(format!("{}-{}", name(&dir), node.name), plan);
        }
    }
}

#[test]
fn every_example_object_passes_the_cel_rules() {
    for dir in examples() {
        let s = load_example(&dir).snapshot;
        let mut failures = Vec::new();
        macro_rules! check {
            ($map:expr) => {
                for (key, object) in &$map {
                    if let Err(e) = validate_cel(&**object) {
                        failures.push(format!("{key}: {e:?}"));
                    }
                }
            };
        }
        check!(s.networks);
        check!(s.subnets);
        check!(s.ports);
        check!(s.routers);
        check!(s.floating_ips);
        check!(s.security_groups);
        assert!(failures.is_empty(), "{}: {failures:#?}", dir.display());
    }
}

#[test]
fn three_tier_node_1_shows_every_section() {
    let config = ClusterConfig::default();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/three-tier");
    let resolution = resolve(&load_example(&dir).snapshot, &config);
    let plan = plan_node(&resolution, &config, config.node("node-1").unwrap());
    assert!(!plan.bridges.is_empty() && !plan.uplinks.is_empty() && !plan.fdb.is_empty());
    assert!(!plan.ports.is_empty() && !plan.dhcp.is_empty() && !plan.routers.is_empty());
    assert!(!plan.security.ports.is_empty());
    let text = render::text(&plan);
    for section in [
        "Bridges",
        "Uplinks",
        "FDB entries",
        "Ports",
        "DHCP",
        "Routers",
        "Security groups",
    ] {
        assert!(text.contains(section), "missing {section}:\n{text}");
    }
    assert!(text.contains("SNAT 10.20.1.0/24 -> "), "{text}");
    assert!(text.contains("203.0.113.100 <-> 10.20.1.10"), "{text}");
}

#[test]
fn replaying_recorded_statuses_changes_nothing() {
    let config = ClusterConfig::default();
    let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    for dir in examples() {
        let mut snapshot = load_example(&dir).snapshot;
        let first = resolve(&snapshot, &config);
        status::apply(&mut snapshot, &first, &now);
        let second = resolve(&snapshot, &config);
        for node in &config.nodes {
            assert_eq!(
                plan_node(&first, &config, node),
                plan_node(&second, &config, node),
                "{} {}",
                dir.display(),
                node.name
            );
        }
    }
}

#[test]
fn a_security_group_s_status_counts_its_rules_and_ready_ports() {
    let config = ClusterConfig::default();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/three-tier");
    let mut snapshot = load_example(&dir).snapshot;
    // A second port in `app`, and one in `web` that cannot be ready.
    let mut app_2 = (*snapshot.ports[&neutrino::core::Key::new("shop", "app-1")]).clone();
    app_2.metadata.name = Some("app-2".into());
    snapshot.ports.insert(
        neutrino::core::Key::new("shop", "app-2"),
        std::sync::Arc::new(app_2),
    );
    let mut broken = (*snapshot.ports[&neutrino::core::Key::new("shop", "web-1")]).clone();
    broken.metadata.name = Some("web-2".into());
    broken.spec.network = "nowhere".into();
    snapshot.ports.insert(
        neutrino::core::Key::new("shop", "web-2"),
        std::sync::Arc::new(broken),
    );
    let resolution = resolve(&snapshot, &config);
    let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    status::apply(&mut snapshot, &resolution, &now);
    let counts = |name: &str| {
        let status = snapshot.security_groups[&neutrino::core::Key::new("shop", name)]
            .status
            .clone()
            .unwrap();
        (status.rule_count, status.port_count)
    };
    assert_eq!(counts("web"), (3, 1));
    assert_eq!(counts("app"), (3, 2));
    assert_eq!(counts("db"), (3, 1));
}
