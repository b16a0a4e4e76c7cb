//! Every bad manifest under tests/invalid/ must be refused, with a message
//! that names the object and the field.
//!
//! Each file starts with comment lines saying what must happen:
//! - `# expect: KIND NAMESPACE/NAME FIELD REASON` — resolving the manifests
//!   marks that object not ready for that field and reason.
//! - `# expect-load: FIELD` — reading the file already fails on that field.
//! - `# cel: TEXT` — the CRD's CEL rules refuse the object named by
//!   `expect`, with a message containing TEXT (the API server refuses it at
//!   `kubectl apply`).
//! - `# cel-update: TEXT` — the file holds two versions of one object; the
//!   CEL transition rules refuse the change from the first to the second.
//! - `# cluster: FILE` — resolve with this cluster file (relative to the
//!   manifest) instead of the default nodes and physical networks.

use std::path::{Path, PathBuf};

use kube::core::cel::{validate_cel, validate_cel_update};
use neutrino::api::{FloatingIP, Network, Port, Router, SecurityGroup, Subnet};
use neutrino::core::{ClusterConfig, Kind, Object, resolve};
use neutrino::manifest::{LoadError, load};

fn directives(path: &Path, key: &str) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let prefix = format!("# {key}:");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().to_string())
        .collect()
}

fn cel_errors(object: &Object) -> String {
    let result = match object {
        Object::Network(o) => validate_cel(o),
        Object::Subnet(o) => validate_cel(o),
        Object::Port(o) => validate_cel(o),
        Object::Router(o) => validate_cel(o),
        Object::FloatingIP(o) => validate_cel(o),
        Object::SecurityGroup(o) => validate_cel(o),
    };
    result.err().map(|e| format!("{e:?}")).unwrap_or_default()
}

fn cel_update_errors(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
    let docs: Vec<_> = docs.into_iter().filter(|d| !d.is_null()).collect();
    assert_eq!(
        docs.len(),
        2,
        "{}: a cel-update file holds the old and the new object",
        path.display()
    );
    let (old, new) = (docs[0].clone(), docs[1].clone());
    fn check<T: kube::CustomResourceExt + serde::Serialize + serde::de::DeserializeOwned>(
        old: serde_json::Value,
        new: serde_json::Value,
    ) -> String {
        let old: T = serde_json::from_value(old).unwrap();
        let new: T = serde_json::from_value(new).unwrap();
        assert!(
            validate_cel(&old).is_ok(),
            "the old object must be valid by itself"
        );
        validate_cel_update(&new, &old)
            .err()
            .map(|e| format!("{e:?}"))
            .unwrap_or_default()
    }
    match docs[1]["kind"].as_str().unwrap() {
        "Network" => check::<Network>(old, new),
        "Subnet" => check::<Subnet>(old, new),
        "Port" => check::<Port>(old, new),
        "Router" => check::<Router>(old, new),
        "FloatingIP" => check::<FloatingIP>(old, new),
        "SecurityGroup" => check::<SecurityGroup>(old, new),
        other => panic!("unknown kind {other}"),
    }
}

fn kind(name: &str) -> Kind {
    match name {
        "Network" => Kind::Network,
        "Subnet" => Kind::Subnet,
        "Port" => Kind::Port,
        "Router" => Kind::Router,
        "FloatingIP" => Kind::FloatingIP,
        "SecurityGroup" => Kind::SecurityGroup,
        other => panic!("unknown kind {other}"),
    }
}

/// Checks one file; returns what went wrong, if anything.
fn check_file(path: &Path) -> Result<(), String> {
    let expect = directives(path, "expect");
    let expect_load = directives(path, "expect-load");
    let cel = directives(path, "cel");
    let cel_update = directives(path, "cel-update");
    if expect.is_empty() && expect_load.is_empty() && cel_update.is_empty() {
        return Err("says nothing about what must fail".into());
    }
    for text in &cel_update {
        let errors = cel_update_errors(path);
        if !errors.contains(text.as_str()) {
            return Err(format!(
                "CEL should refuse the update with {text:?}, got {errors:?}"
            ));
        }
    }
    if !cel_update.is_empty() {
        return Ok(());
    }
    let manifests = match load(path) {
        Err(errors) => {
            let Some(field) = expect_load.first() else {
                return Err(format!("failed to load: {errors:?}"));
            };
            let named = errors.iter().any(|e| match e {
                LoadError::Invalid { field: f, .. } => f == field,
                _ => false,
            });
            let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
            return if named {
                Ok(())
            } else {
                Err(format!("load errors do not name {field}: {all:?}"))
            };
        }
        Ok(m) if !expect_load.is_empty() => {
            return Err(format!("loaded, though {expect_load:?} is wrong: {m:?}"));
        }
        Ok(m) => m,
    };
    let config = match directives(path, "cluster").first() {
        None => ClusterConfig::default(),
        Some(file) => {
            let text = std::fs::read_to_string(path.parent().unwrap().join(file)).unwrap();
            serde_saphyr::from_str(&text).unwrap()
        }
    };
    let resolution = resolve(&manifests.snapshot, &config);
    let problems = resolution.problems();
    for line in &expect {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [kind_name, object, field, reason] = parts[..] else {
            return Err(format!("malformed expect line {line:?}"));
        };
        let (namespace, name) = object.split_once('/').expect("NAMESPACE/NAME");
        let found = problems.iter().any(|p| {
            p.object.kind == kind(kind_name)
                && p.object.key.namespace == namespace
                && p.object.key.name == name
                && p.field == field
                && p.reason.as_str() == reason
        });
        if !found {
            let all: Vec<String> = problems
                .iter()
                .map(|p| format!("{p} [{}]", p.reason.as_str()))
                .collect();
            return Err(format!("no problem {line:?}; found {all:#?}"));
        }
        if let Some(text) = cel.first() {
            let id = manifests
                .sources
                .keys()
                .find(|id| {
                    id.kind == kind(kind_name)
                        && id.key.namespace == namespace
                        && id.key.name == name
                })
                .expect("the expected object is in the file")
                .clone();
            let object = snapshot_object(&manifests.snapshot, &id);
            let errors = cel_errors(&object);
            if !errors.contains(text.as_str()) {
                return Err(format!(
                    "CEL should refuse {id} with {text:?}, got {errors:?}"
                ));
            }
        }
    }
    Ok(())
}

fn snapshot_object(snapshot: &neutrino::core::Snapshot, id: &neutrino::core::ObjectId) -> Object {
    let key = &id.key;
    match id.kind {
        Kind::Network => Object::Network((*snapshot.networks[key]).clone()),
        Kind::Subnet => Object::Subnet((*snapshot.subnets[key]).clone()),
        Kind::Port => Object::Port((*snapshot.ports[key]).clone()),
        Kind::Router => Object::Router((*snapshot.routers[key]).clone()),
        Kind::FloatingIP => Object::FloatingIP((*snapshot.floating_ips[key]).clone()),
        Kind::SecurityGroup => Object::SecurityGroup((*snapshot.security_groups[key]).clone()),
    }
}

fn invalid_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_invalid_manifest_is_refused_naming_its_field() {
    let files = invalid_files();
    assert!(files.len() >= 80, "only {} invalid manifests", files.len());
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| {
            check_file(f)
                .err()
                .map(|e| format!("{}: {e}", f.file_name().unwrap().to_string_lossy()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}
