//! The `neutrino` binary as a user runs it.

use std::path::Path;
use std::process::{Command, Output};

/// The binary, run from the repository root.
fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_neutrino"));
    command.current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}

fn neutrino(args: &[&str]) -> Output {
    command().args(args).output().expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn plan_three_tier_prints_every_section() {
    let out = neutrino(&["plan", "-f", "examples/three-tier", "--node", "node-1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for section in [
        "Bridges",
        "Uplinks",
        "FDB entries",
        "Neighbours",
        "Ports",
        "DHCP",
        "Routers",
        "Security groups",
    ] {
        assert!(text.contains(section), "missing {section}:\n{text}");
    }
    assert!(text.contains("router shop/edge"), "{text}");
}

#[test]
fn plan_speaks_yaml_and_json() {
    let yaml = neutrino(&[
        "plan",
        "-f",
        "examples/quickstart",
        "--node",
        "node-2",
        "-o",
        "yaml",
    ]);
    assert!(yaml.status.success(), "{}", stderr(&yaml));
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&stdout(&yaml)).unwrap();
    assert_eq!(docs[0]["node"], "node-2");

    let json = neutrino(&["plan", "-f", "examples/quickstart", "-o", "json"]);
    assert!(json.status.success(), "{}", stderr(&json));
    let plans: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(plans.as_array().unwrap().len(), 3, "every default node");
}

#[test]
fn plan_of_a_bad_manifest_names_file_object_and_field() {
    let file = "tests/invalid/subnet-gateway-outside.yaml";
    let out = neutrino(&["plan", "-f", file, "--node", "node-1"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(file), "{err}");
    assert!(err.contains("Subnet t/s"), "{err}");
    assert!(err.contains("spec.gatewayIP"), "{err}");
    assert!(stdout(&out).is_empty(), "nothing is planned");
}

#[test]
fn plan_refuses_an_unknown_node_and_a_bad_cluster_file() {
    let out = neutrino(&["plan", "-f", "examples/quickstart", "--node", "node-9"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("node node-9 is not known"),
        "{}",
        stderr(&out)
    );

    let dir = std::env::temp_dir().join(format!("neutrino-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cluster = dir.join("cluster.yaml");
    std::fs::write(&cluster, "vniRanges: [{min: 10, max: 5}]\n").unwrap();
    let out = neutrino(&[
        "plan",
        "-f",
        "examples/quickstart",
        "--cluster",
        cluster.to_str().unwrap(),
    ]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("vniRanges"), "{}", stderr(&out));
}

#[test]
fn plan_honours_a_cluster_file() {
    let dir = std::env::temp_dir().join(format!("neutrino-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cluster = dir.join("cluster.yaml");
    std::fs::write(
        &cluster,
        "underlayMTU: 9000\nnodes:\n- {name: node-1, tunnelIP: 192.0.2.1}\n- {name: node-2, tunnelIP: 192.0.2.2}\n",
    )
    .unwrap();
    let out = neutrino(&[
        "plan",
        "-f",
        "examples/quickstart",
        "--cluster",
        cluster.to_str().unwrap(),
        "-o",
        "json",
    ]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let plans: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        plans[0]["bridges"][0]["mtu"], 8950,
        "9000 less the VXLAN overhead"
    );
    assert_eq!(plans[0]["fdb"][0]["destination"], "192.0.2.2");
}

#[test]
fn crds_prints_what_crds_folder_holds() {
    let out = neutrino(&["crds"]);
    assert!(out.status.success());
    let printed = stdout(&out);
    for file in [
        "network",
        "subnet",
        "port",
        "router",
        "floatingip",
        "securitygroup",
    ] {
        let on_disk = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("crds/{file}.yaml")),
        )
        .unwrap();
        assert!(
            printed.contains(&on_disk),
            "{file}.yaml differs from `neutrino crds`"
        );
    }
}

#[test]
fn version_names_the_api() {
    let out = neutrino(&["version"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("neutrino.dev/v1alpha1"));
}

#[test]
fn plan_reports_duplicates_and_broken_yaml_by_file() {
    let dir = std::env::temp_dir().join(format!("neutrino-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let network = "apiVersion: neutrino.dev/v1alpha1\nkind: Network\nmetadata: {name: net, namespace: t}\nspec: {type: vxlan}\n";
    std::fs::write(dir.join("a.yaml"), network).unwrap();
    std::fs::write(dir.join("b.yaml"), network).unwrap();
    std::fs::write(dir.join("c.yaml"), "kind: [unclosed\n").unwrap();
    let out = neutrino(&["plan", "-f", dir.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(
            "b.yaml (document 1): Network t/net is defined twice; the first definition is in"
        ),
        "{err}"
    );
    assert!(err.contains("c.yaml: not valid YAML"), "{err}");
}

#[test]
fn the_lab_names_what_it_misses() {
    // Not root: it says so before touching anything.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_neutrino"),
        ])
        .args([
            "lab",
            "--state",
            "/nonexistent/lab",
            "up",
            "-f",
            "examples/quickstart",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("setpriv runs");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("neutrino lab needs root"),
        "{}",
        stderr(&out)
    );

    // Root without the programs the lab drives: it names the packages.
    let out = command()
        .args([
            "lab",
            "--state",
            "/nonexistent/lab",
            "up",
            "-f",
            "examples/quickstart",
        ])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    if nix::unistd::Uid::effective().is_root() {
        for package in ["dnsmasq-base", "udhcpc", "iptables", "ipset", "iproute2"] {
            assert!(err.contains(package), "{err}");
        }
        assert!(err.contains("apt-get install"), "{err}");
    }
    assert!(!Path::new("/nonexistent/lab").exists());
}

#[test]
fn lab_commands_without_a_lab_say_how_to_start_one() {
    let out = neutrino(&["lab", "--state", "/nonexistent/lab", "status"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("neutrino lab up -f PATH"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn plan_reads_a_kubectl_dump_with_its_claims() {
    // `kubectl get neutrino -A -o yaml`: one List, with claims and node records.
    let dump = r#"
apiVersion: v1
kind: List
items:
- apiVersion: neutrino.dev/v1alpha1
  kind: Network
  metadata: {name: blue, namespace: tenant-a}
  spec: {type: vxlan, segmentationID: 1001}
- apiVersion: neutrino.dev/v1alpha1
  kind: Subnet
  metadata: {name: blue-v4, namespace: tenant-a}
  spec: {network: blue, cidr: 10.10.0.0/24}
- apiVersion: neutrino.dev/v1alpha1
  kind: Port
  metadata: {name: web-2, namespace: tenant-a}
  spec: {network: blue, nodeName: node-2}
- apiVersion: neutrino.dev/v1alpha1
  kind: IPClaim
  metadata: {name: blue-v4.10.10.0.50, namespace: tenant-a}
  spec: {subnet: blue-v4, address: 10.10.0.50, holder: {kind: Port, namespace: tenant-a, name: web-2}}
- apiVersion: neutrino.dev/v1alpha1
  kind: NodeAgent
  metadata: {name: node-2}
  spec: {tunnelIP: 198.18.0.2, gateway: true}
"#;
    let file = std::env::temp_dir().join(format!("neutrino-dump-{}.yaml", std::process::id()));
    std::fs::write(&file, dump).unwrap();
    let out = neutrino(&[
        "plan",
        "-f",
        file.to_str().unwrap(),
        "--node",
        "node-2",
        "-o",
        "json",
    ]);
    std::fs::remove_file(&file).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        plan["ports"][0]["addresses"][0], "10.10.0.50/24",
        "the claim is honoured"
    );
}

#[test]
fn controller_refuses_a_lease_too_short_to_renew() {
    let out = neutrino(&["controller", "--lease-seconds", "1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--lease-seconds") && stderr(&out).contains("1 is not in 2.."),
        "{}",
        stderr(&out)
    );
}

#[test]
fn logs_are_json_objects_when_asked() {
    let kubeconfig = Path::new(env!("CARGO_TARGET_TMPDIR")).join("unreachable.kubeconfig");
    // An API server nobody listens on: the controller logs its failed watches.
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n\
         clusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n\
         users: [{name: u, user: {}}]\n\
         contexts: [{name: x, context: {cluster: c, user: u}}]\n",
    )
    .unwrap();
    let mut child = command()
        .args(["controller", "--listen", "127.0.0.1:0"])
        .env("KUBECONFIG", &kubeconfig)
        .env("NEUTRINO_LOG", "neutrino=info")
        .env("NEUTRINO_LOG_FORMAT", "json")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let lines: Vec<serde_json::Value> = stderr(&out)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["level"] == "WARN"
            && l["message"] == "watch failed; retrying"
            && l["kind"].is_string()),
        "{lines:#?}"
    );

    let out = command()
        .arg("version")
        .env("NEUTRINO_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("NEUTRINO_LOG_FORMAT: expected text or json, got \"xml\""),
        "{}",
        stderr(&out)
    );
}

/// The long options `neutrino SUBCOMMAND --help` lists.
fn options(subcommand: &str) -> Vec<String> {
    let help = stdout(&neutrino(&[subcommand, "--help"]));
    help.lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .map(|l| format!("--{}", l.split([' ', '=']).next().unwrap()))
        .filter(|o| o != "--help")
        .collect()
}

#[test]
fn the_readme_names_every_option_of_the_cluster_components_and_the_rust_needed() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for subcommand in ["controller", "agent", "uninstall"] {
        let options = options(subcommand);
        assert!(!options.is_empty(), "{subcommand}: {options:?}");
        for option in options {
            assert!(
                readme.contains(&format!("`{option}")) || readme.contains(&format!("[{option}")),
                "README.md does not mention `neutrino {subcommand} {option}`"
            );
        }
    }
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let rust = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    assert!(
        readme.contains(&format!("Rust {rust} or newer")),
        "README.md does not say Rust {rust} is needed"
    );
}
