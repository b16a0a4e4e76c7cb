//! The Argo CD health check in docs/gitops.md agrees with
//! `kubectl wait --for=condition=Ready`: run by a real Lua interpreter on
//! Networks read back from a real API server, in each state the controller
//! writes, it says `Healthy` exactly when kubectl stops waiting. Argo CD
//! users and those who script with kubectl (or Flux, which reads the same
//! conditions) then see one answer. The script is taken from the doc, so the
//! doc is what is tested.

mod support;

use std::process::Command;

use serde_json::{Value, json};
use support::control_plane::{ControlPlane, control_plane, repository, run_with_stdin};

const NAMESPACE: &str = "gitops-health";
const HEALTH_KEY: &str = "resource.customizations.health.neutrino.dev_Network: &health |";

/// The Lua under `HEALTH_KEY` in docs/gitops.md, de-indented: the YAML block
/// scalar ends at the first line indented no deeper than its key.
fn health_script() -> String {
    let doc = std::fs::read_to_string(repository().join("docs/gitops.md")).unwrap();
    let mut lines = doc.lines().skip_while(|l| l.trim() != HEALTH_KEY);
    let key = lines
        .next()
        .unwrap_or_else(|| panic!("docs/gitops.md has no `{HEALTH_KEY}`"));
    let indent = |l: &str| l.len() - l.trim_start().len();
    let body: Vec<&str> = lines
        .take_while(|l| l.trim().is_empty() || indent(l) > indent(key))
        .collect();
    let depth = body.iter().map(|l| indent(l)).min().unwrap_or(0);
    let script: String = body
        .iter()
        .map(|l| format!("{}\n", l.get(depth..).unwrap_or("")))
        .collect();
    assert!(script.contains("return"), "empty health check:\n{script}");
    script
}

/// A Lua string literal: every byte outside printable ASCII as `\ddd`.
fn lua_string(text: &str) -> String {
    let mut out = String::from("\"");
    for byte in text.bytes() {
        match byte {
            b'"' | b'\\' => out.extend(['\\', char::from(byte)]),
            0x20..=0x7e => out.push(char::from(byte)),
            _ => out.push_str(&format!("\\{byte:03}")),
        }
    }
    out + "\""
}

/// A JSON value as a Lua table constructor, the way Argo CD hands objects to
/// its scripts: objects and arrays become tables, null becomes nil.
fn lua_value(value: &Value) -> String {
    let table = |items: Vec<String>| format!("{{{}}}", items.join(", "));
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => table(items.iter().map(lua_value).collect()),
        Value::Object(map) => table(
            map.iter()
                .map(|(k, v)| format!("[{}] = {}", lua_string(k), lua_value(v)))
                .collect(),
        ),
    }
}

fn require_lua() {
    let found = Command::new("lua5.4").arg("-v").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "lua5.4 is missing: run scripts/install-deps, which installs it"
    );
}

/// What the health check says of `object`: its status and message.
fn argo_health(script: &str, object: &Value) -> (String, String) {
    let program = format!(
        "obj = {}\nlocal hs = assert(load({}, \"=health\"))()\nio.write(tostring(hs.status), \"\\n\", tostring(hs.message))\n",
        lua_value(object),
        lua_string(script),
    );
    let run = run_with_stdin(Command::new("lua5.4").arg("-"), &program);
    assert!(
        run.ok,
        "the health check failed on {object}:\n{}",
        run.stderr
    );
    let stdout = run.stdout;
    let (status, message) = stdout.split_once('\n').unwrap_or((&stdout, ""));
    (status.to_string(), message.to_string())
}

/// Whether kubectl stops waiting; any failure but the timeout fails the test.
fn kubectl_waits(cluster: &ControlPlane, name: &str) -> bool {
    let network = format!("network/{name}");
    let run = cluster.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "--timeout=2s",
        &network,
        "-n",
        NAMESPACE,
    ]);
    assert!(
        run.ok || run.stderr.contains("timed out"),
        "kubectl wait {network}: {}",
        run.stderr
    );
    run.ok
}

fn condition(kind: &str, status: &str, reason: &str, message: &str, generation: i64) -> Value {
    json!({
        "type": kind, "status": status, "reason": reason, "message": message,
        "observedGeneration": generation, "lastTransitionTime": "2025-01-01T00:00:00Z",
    })
}

// The statuses crates/core/src/status.rs writes for a Network, at a generation.

fn allocating(generation: i64) -> Value {
    let message = "claiming its allocations";
    json!({"observedGeneration": generation, "conditions": [
        condition("Ready", "Unknown", "Allocating", message, generation),
        condition("Reconciling", "True", "Allocating", message, generation),
    ]})
}

fn ready(generation: i64) -> Value {
    json!({"observedGeneration": generation, "segmentationID": 1001, "mtu": 1450, "conditions": [
        condition("Ready", "True", "Allocated", "allocated and valid", generation),
    ]})
}

fn in_use(generation: i64) -> Value {
    let message =
        "spec.segmentationID: segmentationID 1001 is already used by network gitops-health/ready";
    json!({"observedGeneration": generation, "conditions": [
        condition("Ready", "False", "InUse", message, generation),
        condition("Stalled", "True", "InUse", message, generation),
    ]})
}

fn deleting(generation: i64) -> Value {
    let message = "being deleted; waits until these no longer use it: Subnet gitops-health/v4";
    json!({"observedGeneration": generation, "conditions": [
        condition("Ready", "False", "Deleting", message, generation),
        condition("Reconciling", "True", "Deleting", message, generation),
    ]})
}

enum Step {
    /// The controller writes the status for the generation it sees.
    Controller(fn(i64) -> Value),
    /// The user changes the spec, which makes a new generation.
    ChangeSpec,
    /// The user deletes it while something uses it: the finalizer keeps it.
    Delete,
}

fn generation(cluster: &ControlPlane, name: &str) -> i64 {
    let object = get(cluster, name);
    object["metadata"]["generation"].as_i64().unwrap()
}

fn get(cluster: &ControlPlane, name: &str) -> Value {
    let text = cluster.kubectl_ok(&["get", "network", name, "-n", NAMESPACE, "-o", "json"]);
    serde_json::from_str(&text).unwrap()
}

/// A new Network, taken through `steps`.
fn create(cluster: &ControlPlane, name: &str, steps: &[Step]) {
    let network = json!({
        "apiVersion": "neutrino.dev/v1alpha1", "kind": "Network",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"type": "vxlan"},
    });
    let run = cluster.kubectl_with(&["apply", "--server-side", "-f", "-"], &network.to_string());
    assert!(run.ok, "{}", run.stderr);
    for step in steps {
        let generation = generation(cluster, name);
        let (patch, subresource) = match step {
            Step::Controller(status) => (json!({"status": status(generation)}), true),
            Step::ChangeSpec => (json!({"spec": {"mtu": 1300 + generation}}), false),
            // The controller's finalizer, without which the deletion would not wait.
            Step::Delete => (
                json!({"metadata": {"finalizers": ["neutrino.dev/in-use"]}}),
                false,
            ),
        };
        let patch = patch.to_string();
        let mut args = vec!["patch", "network", name, "-n", NAMESPACE, "--type=merge"];
        args.extend(["-p", &patch]);
        if subresource {
            args.push("--subresource=status");
        }
        cluster.kubectl_ok(&args);
        if let Step::Delete = step {
            cluster.kubectl_ok(&["delete", "network", name, "-n", NAMESPACE, "--wait=false"]);
        }
    }
}

#[test]
fn argo_cd_health_agrees_with_kubectl_wait() {
    use Step::*;
    require_lua();
    let script = health_script();
    let states: &[(&str, &[Step], &str)] = &[
        ("no-status", &[], "Progressing"),
        ("allocating", &[Controller(allocating)], "Progressing"),
        ("ready", &[Controller(ready)], "Healthy"),
        (
            "spec-changed",
            &[Controller(ready), ChangeSpec],
            "Progressing",
        ),
        (
            "ready-again",
            &[Controller(ready), ChangeSpec, Controller(ready)],
            "Healthy",
        ),
        ("in-use", &[Controller(in_use)], "Degraded"),
        // A fix the controller has not seen yet is no longer Degraded.
        ("fixed", &[Controller(in_use), ChangeSpec], "Progressing"),
        (
            "deleting",
            &[Controller(ready), Delete, Controller(deleting)],
            "Progressing",
        ),
    ];

    let cluster = control_plane();
    cluster.kubectl_ok(&["apply", "--server-side", "-f", "crds/"]);
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/networks.neutrino.dev",
    ]);
    cluster.kubectl_ok(&["create", "namespace", NAMESPACE]);
    for (name, steps, _) in states {
        create(cluster, name, steps);
    }

    // Each wait that times out takes its two seconds: wait for all at once.
    let waited: Vec<bool> = std::thread::scope(|scope| {
        let waits: Vec<_> = states
            .iter()
            .map(|(name, _, _)| scope.spawn(move || kubectl_waits(cluster, name)))
            .collect();
        waits.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut wrong = Vec::new();
    for ((name, _, expected), waited) in states.iter().zip(waited) {
        let (health, message) = argo_health(&script, &get(cluster, name));
        let line = format!("{name}: Argo CD {health} ({message}), kubectl wait ok: {waited}");
        println!("{line}");
        if health != *expected || (health == "Healthy") != waited {
            wrong.push(format!("{line}; expected {expected}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
