//! The metadata service at 169.254.169.254 as lab workloads reach it:
//! through their node's DHCP namespace by the route DHCP hands out, and
//! through their router where the route is gone. Each port reads its own
//! data and only its own — read with curl and with cloud-init's own
//! readers — whatever address another tenant's workload puts on its
//! interface.

mod support;

use neutrino::dataplane::metadata::gate::Limits;
use serde_json::{Value, json};
use support::control_plane::tools;
use support::objects::{Objects, fixed, merged};
use support::{TestLab, manifests, python};

/// An external flat network and tenant-a's blue behind router edge, with
/// web-1 (a hostname and a boot Secret), web-2, and waiting (its Secret
/// missing); beside them tenant-b's intruder, on the same CIDR on web-1's
/// node without port security (nothing stops it from sending from web-1's
/// address), and neighbour, on web-1's own network with port security.
fn objects() -> Objects {
    let on_blue = |address: &str, more: Value| merged(fixed("blue-v4", address), more);
    Objects::new()
        .network_with(
            "infra/public",
            json!({"type": "flat", "physicalNetwork": "extnet", "external": true}),
        )
        .subnet(
            "infra/public-v4",
            "public",
            "203.0.113.0/24",
            json!({
                "gatewayIP": "203.0.113.1",
                "allocationPools": [{"start": "203.0.113.40", "end": "203.0.113.250"}],
                "enableDHCP": false,
            }),
        )
        .network("tenant-a/blue")
        .subnet(
            "tenant-a/blue-v4",
            "blue",
            "10.10.0.0/24",
            json!({"dnsNameservers": ["10.10.0.2"]}),
        )
        .router(
            "tenant-a/edge",
            json!({
                "interfaces": [{"subnet": "blue-v4"}],
                "externalGateway": {"network": "infra/public", "ipAddress": "203.0.113.50"},
            }),
        )
        .port(
            "tenant-a/web-1",
            "blue",
            "node-1",
            on_blue(
                "10.10.0.11",
                json!({"hostname": "www", "metadataSecretName": "web-1-boot"}),
            ),
        )
        .secret(
            "tenant-a/web-1-boot",
            json!({
                "userData": "#cloud-config\nruncmd: [touch /tmp/booted]\n",
                "sshAuthorizedKeys": "# the operators\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOps ops@example\n",
            }),
        )
        .port("tenant-a/web-2", "blue", "node-2", on_blue("10.10.0.12", json!({})))
        .port(
            "tenant-a/waiting",
            "blue",
            "node-1",
            on_blue("10.10.0.13", json!({"metadataSecretName": "not-there"})),
        )
        .network("tenant-b/red")
        .subnet("tenant-b/red-v4", "red", "10.10.0.0/24", json!({}))
        .port(
            "tenant-b/intruder",
            "red",
            "node-1",
            merged(fixed("red-v4", "10.10.0.50"), json!({"portSecurity": false})),
        )
        .port("tenant-a/neighbour", "blue", "node-1", on_blue("10.10.0.14", json!({})))
}

const URL: &str = "http://169.254.169.254";

/// `curl` from `port`'s workload: exit code, HTTP status and body.
fn curl(lab: &TestLab, port: &str, path: &str, extra: &[&str]) -> (i32, String) {
    let url = format!("{URL}{path}");
    let mut command = vec!["curl", "-sS", "-m", "3", "-w", "\n%{http_code}"];
    command.extend_from_slice(extra);
    command.push(&url);
    lab.exec(port, &command)
}

fn ok_json(lab: &TestLab, port: &str, path: &str) -> Value {
    let (code, out) = curl(lab, port, path, &[]);
    let (body, status) = out.rsplit_once('\n').unwrap();
    assert_eq!((code, status), (0, "200"), "{port} {path}: {out}");
    serde_json::from_str(body).unwrap()
}

/// What cloud-init's own readers make of the service from `port`'s workload.
fn cloud_init_reads(lab: &TestLab, port: &str) -> Value {
    let packages = tools().with_file_name("cloud-init/usr/lib/python3/dist-packages");
    assert!(
        packages.join("cloudinit").is_dir(),
        "cloud-init is not unpacked in {}: run scripts/install-deps",
        packages.display()
    );
    let script = support::control_plane::repository().join("tests/support/cloud-init-read.py");
    let path = format!("PYTHONPATH={}", packages.display());
    let (code, out) = lab.exec(port, &["env", &path, "python3", script.to_str().unwrap()]);
    assert_eq!(code, 0, "cloud-init's reader failed: {out}");
    serde_json::from_str(&out).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workload_reads_its_own_metadata_and_no_one_elses() {
    let lab = TestLab::new("metadata");
    let dir = manifests("metadata", &objects().yaml());
    lab.lab.up(&dir, 2, &lab.name).await.unwrap();

    // The route DHCP handed out leads to the DHCP server's address.
    let snapshot = lab.lab.snapshot().unwrap();
    let subnet = &snapshot.subnets[&neutrino::core::Key::new("tenant-a", "blue-v4")];
    let server = subnet.status.as_ref().unwrap().dhcp_ip.clone().unwrap();
    let (_, route) = lab.exec("tenant-a/web-1", &["ip", "route", "get", "169.254.169.254"]);
    assert!(route.contains(&format!("via {server} ")), "{route}");

    let meta = ok_json(&lab, "tenant-a/web-1", "/openstack/latest/meta_data.json");
    assert_eq!(meta["hostname"], "www");
    assert_eq!(meta["project_id"], "tenant-a");
    assert_eq!(meta["meta"]["port"], "tenant-a/web-1");
    assert_eq!(meta["meta"]["fixed_ips"], "10.10.0.11");
    let network = ok_json(
        &lab,
        "tenant-a/web-1",
        "/openstack/latest/network_data.json",
    );
    assert_eq!(network["networks"][0]["ip_address"], "10.10.0.11");

    let read = cloud_init_reads(&lab, "tenant-a/web-1");
    assert_eq!(read["metadata"]["local-hostname"], "www");
    assert_eq!(read["metadata"]["instance-id"], meta["uuid"]);
    assert_eq!(
        read["metadata"]["public_keys"]["key-0"],
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOps ops@example"
    );
    assert_eq!(
        read["userdata"],
        "#cloud-config\nruncmd: [touch /tmp/booted]\n"
    );
    assert_eq!(read["ec2"]["local-ipv4"], "10.10.0.11");
    assert_eq!(read["ec2"]["hostname"], "www");
    assert_eq!(
        read["ec2"]["public-keys"]["key-0"],
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOps ops@example"
    );
    let nic = &read["network"]["config"][0];
    assert_eq!(
        (nic["name"].as_str(), nic["mtu"].as_u64()),
        (Some("eth0"), Some(1450))
    );
    assert_eq!(nic["subnets"][0]["type"], "dhcp4");

    // A port without a Secret has no user data; one naming a Secret that
    // is not there is told to come back, with the reason.
    let (_, out) = curl(&lab, "tenant-a/web-2", "/openstack/latest/user_data", &[]);
    assert!(out.ends_with("\n404"), "{out}");
    assert_eq!(
        ok_json(&lab, "tenant-a/web-2", "/openstack/latest/meta_data.json")["hostname"],
        "web-2"
    );
    let (_, out) = curl(
        &lab,
        "tenant-a/waiting",
        "/openstack/latest/meta_data.json",
        &[],
    );
    assert!(
        out.contains("Secret tenant-a/not-there, named by Port tenant-a/waiting (spec.metadataSecretName), does not exist")
            && out.ends_with("\n503"),
        "{out}"
    );

    assert_eq!(
        ok_json(
            &lab,
            "tenant-a/neighbour",
            "/openstack/latest/meta_data.json"
        )["hostname"],
        "neighbour"
    );

    // Another tenant's workload sends from web-1's address: its own
    // network's listener finds no such port of its tenant.
    for port in ["tenant-b/intruder", "tenant-a/neighbour"] {
        let (code, out) = lab.exec(
            port,
            &["ip", "address", "add", "10.10.0.11/32", "dev", "eth0"],
        );
        assert_eq!(code, 0, "{out}");
    }
    let (code, out) = curl(
        &lab,
        "tenant-b/intruder",
        "/openstack/latest/meta_data.json",
        &["--interface", "10.10.0.11"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("no port of network tenant-b/red bound to node node-1 holds 10.10.0.11")
            && out.ends_with("\n404"),
        "{out}"
    );
    let (_, out) = curl(
        &lab,
        "tenant-b/intruder",
        "/latest/user-data",
        &["--interface", "10.10.0.11"],
    );
    assert!(
        !out.contains("cloud-config") && out.ends_with("\n404"),
        "{out}"
    );
    // On web-1's own network, port security drops the spoofed packets.
    let (code, out) = curl(
        &lab,
        "tenant-a/neighbour",
        "/openstack/latest/meta_data.json",
        &["--interface", "10.10.0.11"],
    );
    assert_ne!(code, 0, "a spoofed request got an answer: {out}");
    assert!(!out.contains("www"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_router_answers_the_ports_behind_it_and_not_the_outside() {
    let lab = TestLab::new("metadata-router");
    let dir = manifests("metadata-router", &objects().yaml());
    lab.lab.up(&dir, 2, &lab.name).await.unwrap();

    // web-2 is on node-2, the router on node-1: `lab status` shows both
    // serving it, as the Port's status does on a cluster.
    let status = lab.lab.status().await.unwrap();
    let row = status
        .lines()
        .find(|l| l.trim_start().starts_with("tenant-a/web-2 "))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(
        row.ends_with("(node-2)  10.10.0.2 (node-2), router edge 10.10.0.1 (node-1)"),
        "{row}"
    );

    // Without the host route, the request takes the default route to the
    // router.
    let (code, out) = lab.exec(
        "tenant-a/web-2",
        &["ip", "route", "del", "169.254.169.254/32"],
    );
    assert_eq!(code, 0, "{out}");
    let (_, route) = lab.exec("tenant-a/web-2", &["ip", "route", "get", "169.254.169.254"]);
    assert!(route.contains("via 10.10.0.1"), "{route}");
    let meta = ok_json(&lab, "tenant-a/web-2", "/openstack/latest/meta_data.json");
    assert_eq!(meta["hostname"], "web-2");
    assert_eq!(meta["meta"]["port"], "tenant-a/web-2");

    // The external network reaches the router's gateway leg, where no
    // listener is.
    let outside = lab.lab.outside_namespace().unwrap();
    let (code, out) = support::exec_in(
        &outside,
        &[
            "ip",
            "route",
            "replace",
            "169.254.169.254/32",
            "via",
            "203.0.113.50",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = support::exec_in(
        &outside,
        &[
            "curl",
            "-sS",
            "-m",
            "3",
            &format!("{URL}/openstack/latest/meta_data.json"),
        ],
    );
    assert_ne!(code, 0, "the outside read metadata: {out}");
}

/// `hold.py`'s report: connections opened, refused at once, and when each
/// of the others was closed (`None`: still open at the end).
fn hold(lab: &TestLab, port: &str, count: usize, mode: &str, sources: &[&str]) -> Value {
    let count = count.to_string();
    let mut args = vec!["169.254.169.254", "80", &count, "9", mode];
    args.extend_from_slice(sources);
    let (code, out) = python(lab, port, "hold.py", &args);
    assert_eq!(code, 0, "{port}: {out}");
    serde_json::from_str(&out).unwrap()
}

/// When each connection `report` did not see refused was closed, in
/// seconds after it opened; one still open at the end fails the test.
fn closed_later(report: &Value) -> Vec<f64> {
    let held = report["held"].as_array().unwrap();
    held.iter()
        .map(|t| {
            t.as_f64()
                .unwrap_or_else(|| panic!("a connection outlived the header timeout: {report}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workload_cannot_hold_the_service_from_the_others() {
    let lab = TestLab::new("metadata-hold");
    let dir = manifests("metadata-hold", &objects().yaml());
    lab.lab.up(&dir, 2, &lab.name).await.unwrap();
    let limits = Limits::default();
    // The intruder has no port security: it calls from twenty addresses
    // of its own network.
    let sources: Vec<String> = (60..80).map(|i| format!("10.10.0.{i}")).collect();
    for source in &sources {
        let address = format!("{source}/32");
        let (code, out) = lab.exec(
            "tenant-b/intruder",
            &["ip", "address", "add", &address, "dev", "eth0"],
        );
        assert_eq!(code, 0, "{out}");
    }
    let sources: Vec<&str> = sources.iter().map(String::as_str).collect();

    let (silent, slow, spread) = std::thread::scope(|scope| {
        let silent = scope.spawn(|| hold(&lab, "tenant-a/web-1", 200, "silent", &[]));
        let slow = scope.spawn(|| hold(&lab, "tenant-a/web-2", 50, "slow", &[]));
        let spread = scope.spawn(|| hold(&lab, "tenant-b/intruder", 200, "silent", &sources));
        std::thread::sleep(std::time::Duration::from_secs(2));
        // Meanwhile, a neighbour on web-1's network and node is served.
        let meta = ok_json(
            &lab,
            "tenant-a/neighbour",
            "/openstack/latest/meta_data.json",
        );
        assert_eq!(meta["hostname"], "neighbour");
        (
            silent.join().unwrap(),
            slow.join().unwrap(),
            spread.join().unwrap(),
        )
    });

    // One address keeps its share, each connection until the header timeout.
    assert_eq!(silent["refused"], 200 - limits.per_source, "{silent}");
    assert_eq!(slow["refused"], 50 - limits.per_source, "{slow}");
    let header = limits.header.as_secs_f64();
    for report in [&silent, &slow] {
        let closed = closed_later(report);
        assert_eq!(closed.len(), limits.per_source, "{report}");
        assert!(closed.iter().all(|t| *t >= header - 1.0), "{report}");
    }
    // Many addresses of one network keep that network's share.
    assert_eq!(spread["refused"], 200 - limits.per_listener, "{spread}");
    assert_eq!(closed_later(&spread).len(), limits.per_listener, "{spread}");

    // Every connection given back, web-1 is served again.
    assert_eq!(
        ok_json(&lab, "tenant-a/web-1", "/openstack/latest/meta_data.json")["hostname"],
        "www"
    );
}
