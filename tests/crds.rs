//! The CRDs in crds/ are exactly what the Rust types generate, and they are
//! structural, explained and usable from kubectl.

use serde_json::Value;
use std::path::Path;

use neutrino::api::{crd_yaml, crds};

#[test]
fn crds_folder_matches_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let mut stale = Vec::new();
    for (file, crd) in crds() {
        let on_disk = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        if on_disk != crd_yaml(&crd) {
            stale.push(file);
        }
    }
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(files, crds().len(), "crds/ holds files no kind generates");
    assert!(
        stale.is_empty(),
        "crds/ is stale for {stale:?}: run `cargo run -- crds --dir crds`"
    );
}

/// The API server's structural schema rules: every node has a type (unless
/// it preserves unknown fields or is int-or-string), no type hides in
/// oneOf/anyOf/allOf/not, no $ref, and list-map keys are required or defaulted.
fn structural(path: &str, schema: &Value, errors: &mut Vec<String>) {
    let Some(map) = schema.as_object() else {
        return;
    };
    let exempt = map.contains_key("x-kubernetes-preserve-unknown-fields")
        || map.contains_key("x-kubernetes-int-or-string");
    if !map.contains_key("type") && !exempt {
        errors.push(format!("{path}: no type"));
    }
    if map.contains_key("$ref") {
        errors.push(format!("{path}: $ref"));
    }
    for junction in ["oneOf", "anyOf", "allOf", "not"] {
        if map
            .get(junction)
            .is_some_and(|b| b.to_string().contains("\"type\""))
        {
            errors.push(format!("{path}: type inside {junction}"));
        }
    }
    if let Some(properties) = map.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            structural(&format!("{path}.{name}"), child, errors);
        }
    }
    if let Some(items) = map.get("items") {
        structural(&format!("{path}[]"), items, errors);
        if let Some(keys) = map
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
        {
            let required: Vec<&str> = items["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            for key in keys.iter().filter_map(Value::as_str) {
                let defaulted = items["properties"][key].get("default").is_some();
                if !required.contains(&key) && !defaulted {
                    errors.push(format!(
                        "{path}: list-map key {key} is neither required nor defaulted"
                    ));
                }
            }
        }
    }
    if let Some(extra) = map.get("additionalProperties").filter(|v| v.is_object()) {
        structural(&format!("{path}.*"), extra, errors);
    }
}

/// Every field a user sets or reads has a description for `kubectl explain`.
fn described(path: &str, schema: &Value, errors: &mut Vec<String>) {
    if schema
        .get("description")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        errors.push(format!("{path}: no description"));
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            described(&format!("{path}.{name}"), child, errors);
        }
    }
    let item_properties = schema
        .pointer("/items/properties")
        .and_then(Value::as_object);
    for (name, child) in item_properties.into_iter().flatten() {
        described(&format!("{path}[].{name}"), child, errors);
    }
}

#[test]
fn crds_are_structural_and_explained() {
    let mut errors = Vec::new();
    for (file, crd) in crds() {
        let crd = serde_json::to_value(&crd).unwrap();
        let version = &crd["spec"]["versions"][0];
        let schema = &version["schema"]["openAPIV3Schema"];
        structural(file, schema, &mut errors);
        described(
            &format!("{file}:spec"),
            &schema["properties"]["spec"],
            &mut errors,
        );
        assert_eq!(crd["spec"]["names"]["categories"][0], "neutrino", "{file}");
        assert!(
            crd["spec"]["names"]["shortNames"][0].is_string(),
            "{file}: no short name"
        );
        if file.ends_with("claim.yaml") {
            // Claims are the controller's bookkeeping: a spec, no status.
            continue;
        }
        if file == "nodeagent.yaml" {
            // A node's record: cluster-scoped, written by its agent.
            assert_eq!(crd["spec"]["scope"], "Cluster", "{file}");
            assert!(
                version["subresources"]["status"].is_object(),
                "{file}: no status subresource"
            );
            continue;
        }
        described(
            &format!("{file}:status"),
            &schema["properties"]["status"],
            &mut errors,
        );
        assert_eq!(crd["spec"]["scope"], "Namespaced", "{file}");
        assert!(
            version["subresources"]["status"].is_object(),
            "{file}: no status subresource"
        );
        let columns = version["additionalPrinterColumns"].as_array().unwrap();
        assert!(
            columns.iter().any(|c| c["name"] == "Ready"),
            "{file}: no Ready column"
        );
    }
    assert!(errors.is_empty(), "{errors:#?}");
}

/// What the API server needs to bound the cost of CEL rules: every string
/// a user writes has a maximum length (or a fixed set of values) and every
/// list a maximum size. Without them the server estimates the worst case
/// and refuses the CRD (`estimated rule cost exceeds budget`).
fn bounded(path: &str, schema: &Value, errors: &mut Vec<String>) {
    match schema["type"].as_str() {
        Some("string") if schema["maxLength"].is_null() && schema["enum"].is_null() => {
            errors.push(format!("{path}: a string without maxLength"));
        }
        Some("array") if schema["maxItems"].is_null() => {
            errors.push(format!("{path}: a list without maxItems"));
        }
        _ => {}
    }
    if let Some(properties) = schema["properties"].as_object() {
        for (name, child) in properties {
            bounded(&format!("{path}.{name}"), child, errors);
        }
    }
    if schema["items"].is_object() {
        bounded(&format!("{path}[]"), &schema["items"], errors);
    }
}

#[test]
fn every_string_and_list_users_write_is_bounded() {
    let mut errors = Vec::new();
    for (file, crd) in crds() {
        let crd = serde_json::to_value(&crd).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        bounded(&format!("{file}:spec"), spec, &mut errors);
    }
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn edited_lists_merge_by_key() {
    let expected = [
        (
            "subnet.yaml",
            "/properties/spec/properties/allocationPools",
            "start",
        ),
        (
            "subnet.yaml",
            "/properties/spec/properties/hostRoutes",
            "destination",
        ),
        (
            "port.yaml",
            "/properties/spec/properties/allowedAddressPairs",
            "ipAddress",
        ),
        (
            "router.yaml",
            "/properties/spec/properties/interfaces",
            "subnet",
        ),
        (
            "router.yaml",
            "/properties/spec/properties/routes",
            "destination",
        ),
    ];
    let all: Vec<(&str, Value)> = crds()
        .into_iter()
        .map(|(f, c)| (f, serde_json::to_value(c).unwrap()))
        .collect();
    for (file, pointer, key) in expected {
        let crd = &all.iter().find(|(f, _)| *f == file).unwrap().1;
        let list = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
            .pointer(pointer)
            .unwrap();
        assert_eq!(list["x-kubernetes-list-type"], "map", "{file} {pointer}");
        assert!(
            list["x-kubernetes-list-map-keys"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k == key),
            "{file} {pointer}"
        );
    }
}
