//! The Helm chart agrees with the code: its CRDs are the generated ones,
//! its values fit its schema, its templates use only values that exist and
//! flags the binary has, and its RBAC grants what the components use.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/neutrino")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn values() -> Value {
    serde_saphyr::from_str(&read(&chart().join("values.yaml"))).unwrap()
}

fn templates() -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = std::fs::read_dir(chart().join("templates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                read(&p),
            )
        })
        .collect();
    found.sort();
    found
}

/// The agent's Port policy lets another node's or an unbound Port only be
/// bound, by comparing every field of its spec but nodeName: a field added
/// to the Port and missing there would be one an agent could rewrite.
#[test]
fn the_agent_port_policy_compares_every_field_of_a_ports_spec() {
    let crd: Value = serde_saphyr::from_str(&read(&chart().join("crds/port.yaml"))).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    let policy = read(&chart().join("templates/admission-policies.yaml"));
    let compared = policy
        .lines()
        .find(|l| l.contains("{{- range list \"network\""))
        .expect("the policy's list of compared fields");
    let fields: Vec<&String> = spec.as_object().unwrap().keys().collect();
    assert!(fields.len() > 5, "{fields:?}");
    for field in fields.into_iter().filter(|f| *f != "nodeName") {
        assert!(
            compared.contains(&format!("\"{field}\"")),
            "the agent-ports-own-node policy does not compare spec.{field}"
        );
    }
}

#[test]
fn the_charts_crds_are_the_generated_ones() {
    let generated = neutrino::api::crds();
    let files = std::fs::read_dir(chart().join("crds")).unwrap().count();
    assert_eq!(
        files,
        generated.len(),
        "charts/neutrino/crds holds other files"
    );
    for (file, crd) in generated {
        assert_eq!(
            read(&chart().join("crds").join(file)),
            neutrino::api::crd_yaml(&crd),
            "charts/neutrino/crds/{file} is stale: run `cargo run -- crds --dir charts/neutrino/crds`"
        );
    }
}

#[test]
fn values_fit_the_schema_and_bad_ones_do_not() {
    let schema: Value = serde_json::from_str(&read(&chart().join("values.schema.json"))).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let good = values();
    let errors: Vec<String> = validator
        .iter_errors(&good)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");

    for (pointer, bad) in [
        ("/controller/replicas", serde_json::json!(0)),
        ("/controller/leaseSeconds", serde_json::json!(1)),
        ("/agent/stateDir", serde_json::json!("relative/dir")),
        ("/image/pullPolicy", serde_json::json!("Sometimes")),
        ("/logFormat", serde_json::json!("xml")),
        ("/cluster/vniRanges", serde_json::json!([{"min": 10}])),
        ("/cluster/tunnelCIDRs", serde_json::json!(["10.0.0.0"])),
        ("/agent/tunnelEndpoint", serde_json::json!("eth1")),
        ("/agent/iptablesBackend", serde_json::json!("iptables")),
    ] {
        let mut values = good.clone();
        *values.pointer_mut(pointer).unwrap() = bad;
        assert!(!validator.is_valid(&values), "{pointer} should be refused");
    }
    let mut unknown = good.clone();
    unknown["controller"]["replica"] = serde_json::json!(3);
    assert!(!validator.is_valid(&unknown), "a misspelt key is refused");
}

#[test]
fn templates_use_only_values_that_exist() {
    let values = values();
    let mut missing = Vec::new();
    for (file, text) in templates() {
        for (i, _) in text.match_indices(".Values.") {
            let path: String = text[i + 8..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '_')
                .collect();
            let pointer = format!("/{}", path.trim_end_matches('.').replace('.', "/"));
            if values.pointer(&pointer).is_none() {
                missing.push(format!("{file}: .Values.{path}"));
            }
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
}

/// The `--flag`s a template passes to `neutrino SUBCOMMAND`.
fn flags(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("- --"))
        .map(|f| f.split(['=', ' ']).next().unwrap().to_string())
        .collect()
}

#[test]
fn templates_pass_flags_the_binary_has() {
    for (file, command) in [
        ("controller-deployment.yaml", "controller"),
        ("agent-daemonset.yaml", "agent"),
        ("uninstall-hook.yaml", "uninstall"),
    ] {
        let text = templates().into_iter().find(|(f, _)| f == file).unwrap().1;
        let help = Command::new(env!("CARGO_BIN_EXE_neutrino"))
            .args([command, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&help.stdout).into_owned();
        let used = flags(&text);
        assert!(!used.is_empty(), "{file} passes no flags?");
        for flag in used {
            assert!(
                help.contains(&format!("--{flag}")),
                "{file} passes --{flag}, which `neutrino {command}` does not have"
            );
        }
        assert!(
            text.contains(&format!("- {command}\n")),
            "{file} runs `neutrino {command}`"
        );
    }
}

#[test]
fn rbac_grants_what_each_component_uses_and_no_more() {
    let controller = templates()
        .into_iter()
        .find(|(f, _)| f == "controller-rbac.yaml")
        .unwrap()
        .1;
    let agent = templates()
        .into_iter()
        .find(|(f, _)| f == "agent-rbac.yaml")
        .unwrap()
        .1;
    for plural in [
        "networks",
        "subnets",
        "ports",
        "routers",
        "floatingips",
        "securitygroups",
    ] {
        assert!(
            controller.contains(&format!("{plural}/status")),
            "the controller writes {plural}/status"
        );
        assert!(agent.contains(plural), "the agent reads {plural}");
        assert!(
            !agent.contains(&format!("{plural}/status")),
            "the agent never writes {plural}"
        );
    }
    assert!(
        controller.contains("[ipclaims, segmentclaims]") && controller.contains("create, delete")
    );
    assert!(
        controller.contains("leases") && controller.contains("kind: Role\n"),
        "leader election stays in its namespace"
    );
    assert!(agent.contains("nodeagents/status"));
    assert!(
        controller.contains("events.k8s.io")
            && controller.contains("[networks, subnets]\n    verbs: [patch]"),
        "events, finalizers"
    );
    for (name, text) in [("controller", &controller), ("agent", &agent)] {
        assert!(
            !text.contains("\"*\"") && !text.contains("[\"*\"]"),
            "{name}: no wildcards"
        );
    }
}

#[test]
fn the_chart_renders_with_helm_into_valid_objects() {
    // Helm's own engine (helm-python-sdk) renders and lints the chart, and
    // kubernetes-validate checks every object strictly; scripts/install-deps
    // installs both from PyPI.
    let out = std::env::temp_dir().join(format!("neutrino-chart-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/chart/render.py");
    let rendered = Command::new("python3")
        .arg(&script)
        .arg(chart())
        .arg(&out)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&rendered.stdout).into_owned()
        + &String::from_utf8_lossy(&rendered.stderr);
    assert!(rendered.status.success(), "{report}");
    assert!(
        report.contains("valid neutrino/templates/agent-daemonset.yaml: DaemonSet"),
        "{report}"
    );
    assert!(
        report.contains("valid neutrino/templates/controller-deployment.yaml: Deployment"),
        "{report}"
    );

    // The rendered ConfigMap is a cluster file the binary takes.
    let cluster = out.join("cluster.yaml");
    let plan = Command::new(env!("CARGO_BIN_EXE_neutrino"))
        .args([
            "plan",
            "-f",
            "examples/quickstart",
            "--node",
            "node-1",
            "--cluster",
        ])
        .arg(&cluster)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    std::fs::remove_dir_all(&out).unwrap();
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
}

/// The `helm install` commands of docs/install.md, each as its arguments
/// (continuation lines joined, single quotes taken off).
fn documented_installs() -> Vec<Vec<String>> {
    let doc = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/install.md"));
    let joined = doc.replace("\\\n", " ");
    joined
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("helm install neutrino charts/neutrino"))
        .map(|line| {
            let mut args = Vec::new();
            let mut word = String::new();
            let mut quoted = false;
            for c in line.chars() {
                match c {
                    '\'' => quoted = !quoted,
                    ' ' if !quoted => {
                        if !word.is_empty() {
                            args.push(std::mem::take(&mut word));
                        }
                    }
                    _ => word.push(c),
                }
            }
            args.push(word);
            args
        })
        .collect()
}

/// What a command's --set and --set-json flags ask for, as Helm users read
/// them: what they write is what they get.
#[derive(Debug, Default, PartialEq)]
struct Asked {
    physnets: Vec<String>,
    interfaces: BTreeMap<String, String>,
    tunnel_endpoint: String,
    tunnel_cidrs: Vec<String>,
}

fn asked_for(args: &[String]) -> Asked {
    let mut asked = Asked {
        tunnel_endpoint: "default-route".into(),
        ..Asked::default()
    };
    for pair in args.windows(2) {
        let value = &pair[1];
        match pair[0].as_str() {
            "--set-json" => {
                let (key, json) = value.split_once('=').unwrap();
                let json: Value = serde_json::from_str(json).unwrap();
                match key {
                    "cluster.physicalNetworks" => asked
                        .physnets
                        .extend(json.as_object().unwrap().keys().cloned()),
                    "agent.physicalInterfaces" => asked.interfaces.extend(
                        json.as_object()
                            .unwrap()
                            .iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())),
                    ),
                    "cluster.tunnelCIDRs" => asked.tunnel_cidrs.extend(
                        json.as_array()
                            .unwrap()
                            .iter()
                            .map(|c| c.as_str().unwrap().to_string()),
                    ),
                    _ => {}
                }
            }
            "--set" => {
                let (key, set) = value.split_once('=').unwrap();
                if let Some(physnet) = key.strip_prefix("cluster.physicalNetworks.") {
                    asked
                        .physnets
                        .push(physnet.split('.').next().unwrap().to_string());
                }
                if let Some(physnet) = key.strip_prefix("agent.physicalInterfaces.") {
                    asked
                        .interfaces
                        .insert(physnet.to_string(), set.to_string());
                }
                if key == "agent.tunnelEndpoint" {
                    asked.tunnel_endpoint = set.replace("\\,", ",");
                }
            }
            _ => {}
        }
    }
    asked.physnets.sort();
    asked.physnets.dedup();
    asked
}

#[test]
fn the_helm_commands_in_the_docs_give_what_they_say() {
    let helm = support::control_plane::tools().join("helm");
    assert!(
        helm.is_file(),
        "{} is missing: run scripts/install-deps --control-plane",
        helm.display()
    );
    let installs = documented_installs();
    assert!(installs.len() >= 4, "{installs:?}");
    for args in installs {
        let mut template: Vec<String> = args[1..].to_vec();
        template[0] = "template".into();
        template.push("--kube-version=v1.37.2".into());
        let output = Command::new(&helm)
            .args(&template)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "helm {}: {}",
            template.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        let rendered: Vec<Value> =
            serde_saphyr::from_multiple(&String::from_utf8_lossy(&output.stdout)).unwrap();
        let of_kind = |kind: &str| {
            rendered
                .iter()
                .find(|d| d["kind"] == kind)
                .unwrap_or_else(|| panic!("no {kind} rendered"))
        };
        let agent_args: Vec<&str> = of_kind("DaemonSet")["spec"]["template"]["spec"]["containers"]
            [0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let mapped: BTreeMap<String, String> = agent_args
            .iter()
            .filter_map(|a| a.strip_prefix("--physical-interface="))
            .map(|m| {
                let (physnet, interface) = m.split_once('=').unwrap();
                (physnet.to_string(), interface.to_string())
            })
            .collect();
        let cluster: Value = serde_saphyr::from_str(
            of_kind("ConfigMap")["data"]["cluster.yaml"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        let mut physnets: Vec<String> = cluster["physicalNetworks"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        physnets.sort();
        let got = Asked {
            physnets,
            interfaces: mapped,
            tunnel_endpoint: agent_args
                .iter()
                .find_map(|a| a.strip_prefix("--tunnel-endpoint="))
                .unwrap_or_default()
                .to_string(),
            tunnel_cidrs: cluster["tunnelCIDRs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect(),
        };
        assert_eq!(got, asked_for(&args), "{}", args.join(" "));
    }
}
