//! Reading manifests from files: the adapter between YAML on disk and a
//! [`Snapshot`], remembering where each object came from so that errors can
//! name the file.

#![forbid(unsafe_code)]

use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use neutrino_api::{GROUP, IPClaim, SegmentClaim, VERSION};
use neutrino_core::ident::is_dns_label;
use neutrino_core::{ApiObject, Kind, Object, ObjectId, Snapshot, for_each_kind, with_kind};

/// Where an object was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub file: PathBuf,
    /// 1-based index of the YAML document in the file.
    pub document: usize,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (document {})", self.file.display(), self.document)
    }
}

/// A manifest that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not valid YAML: {message}", path.display())]
    Yaml { path: PathBuf, message: String },
    #[error("{at}: {object}: {field}: {message}")]
    Invalid {
        at: Source,
        object: String,
        field: String,
        message: String,
    },
    #[error("{at}: {object} is defined twice; the first definition is in {first}")]
    Duplicate {
        at: Source,
        object: ObjectId,
        first: Source,
    },
}

/// The objects read, and where each came from.
#[derive(Debug, Default)]
pub struct Manifests {
    pub snapshot: Snapshot,
    pub sources: BTreeMap<ObjectId, Source>,
    /// The Secrets beside them (Ports name them for the metadata
    /// service), by namespace and name.
    pub secrets: BTreeMap<neutrino_core::Key, Secret>,
}

/// The Secrets as multi-document YAML: what `load` reads back.
pub fn dump_secrets(
    secrets: &BTreeMap<neutrino_core::Key, Secret>,
) -> Result<String, serde_saphyr::SerializeError> {
    let mut out = String::new();
    for secret in secrets.values() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(secret)?);
    }
    Ok(out)
}

/// Takes a core Secret into `manifests`; says whether `value` was one.
fn secret(value: &Value, manifests: &mut Manifests, source: &Source) -> Result<bool, LoadError> {
    let is_secret = value.get("apiVersion").and_then(Value::as_str) == Some("v1")
        && value.get("kind").and_then(Value::as_str) == Some("Secret");
    if !is_secret {
        return Ok(false);
    }
    let mut secret: Secret =
        typed(value.clone()).map_err(|(field, message)| LoadError::Invalid {
            at: source.clone(),
            object: "Secret".into(),
            field,
            message,
        })?;
    let key = neutrino_core::kinds::key_of(&secret);
    secret.metadata.namespace = Some(key.namespace.clone());
    manifests.secrets.insert(key, secret);
    Ok(true)
}

/// The YAML files under `path`: the file itself, or every `.yaml`/`.yml`
/// file below a folder, in name order.
fn files(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let io = |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    };
    if !path.is_dir() {
        std::fs::metadata(path).map_err(io)?;
        return Ok(vec![path.to_path_buf()]);
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io)? {
        let entry = entry.map_err(io)?.path();
        if entry.is_dir() {
            found.extend(files(&entry)?);
        } else if entry.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            found.push(entry);
        }
    }
    found.sort();
    Ok(found)
}

/// Deserializes one typed object, naming the field that fails and refusing
/// fields the schema does not have (as `kubectl apply` does by default).
fn typed<T: DeserializeOwned>(value: Value) -> Result<T, (String, String)> {
    let mut unknown = Vec::new();
    let checked: Result<T, _> = serde_ignored::deserialize(&value, |path| {
        let path = path.to_string();
        // The generated root types read these two by hand.
        if path != "apiVersion" && path != "kind" {
            unknown.push(path);
        }
    });
    if let (Ok(_), Some(field)) = (&checked, unknown.first()) {
        return Err((field.clone(), "unknown field".into()));
    }
    serde_path_to_error::deserialize(value)
        .map_err(|e| (e.path().to_string(), e.inner().to_string()))
}

fn object(value: Value, source: &Source) -> Result<Option<Object>, LoadError> {
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let invalid = |field: &str, message: String| LoadError::Invalid {
        at: source.clone(),
        object: if name.is_empty() {
            kind.clone()
        } else {
            format!("{kind} {name}")
        },
        field: field.to_string(),
        message,
    };
    let Some((group, version)) = api_version.split_once('/') else {
        return Ok(None);
    };
    if group != GROUP {
        return Ok(None);
    }
    if version != VERSION {
        return Err(invalid(
            "apiVersion",
            format!("{api_version} is not served; use {GROUP}/{VERSION}"),
        ));
    }
    if !is_dns_label(&name) {
        return Err(invalid(
            "metadata.name",
            format!("{name:?} is not a DNS label (lowercase letters, digits and '-', at most 63)"),
        ));
    }
    let wrap = |(field, message): (String, String)| invalid(&field, message);
    let Some(known) = Kind::parse(&kind) else {
        let names = Kind::ALL.map(Kind::name);
        let (last, rest) = names.split_last().expect("there are kinds");
        return Err(invalid(
            "kind",
            format!(
                "{kind:?} is not a kind of {GROUP}; the kinds are {} and {last}",
                rest.join(", ")
            ),
        ));
    };
    Ok(Some(with_kind!(known, K => {
        typed::<K>(value).map_err(wrap)?.into_object()
    })))
}

/// Takes the controller's bookkeeping from a dump of a cluster: claims go
/// into the snapshot (allocation honours them), node records are skipped
/// (nodes come from a cluster file). Says whether `value` was one of them.
fn bookkeeping(value: &Value, snapshot: &mut Snapshot, source: &Source) -> Result<bool, LoadError> {
    if value.get("apiVersion").and_then(Value::as_str) != Some(&format!("{GROUP}/{VERSION}")) {
        return Ok(false);
    }
    let invalid = |(field, message): (String, String)| LoadError::Invalid {
        at: source.clone(),
        object: value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        field,
        message,
    };
    match value.get("kind").and_then(Value::as_str) {
        Some("IPClaim") => {
            let claim: IPClaim = typed(value.clone()).map_err(invalid)?;
            let key = neutrino_core::kinds::key_of(&claim);
            snapshot.ip_claims.insert(key, std::sync::Arc::new(claim));
            Ok(true)
        }
        Some("SegmentClaim") => {
            let claim: SegmentClaim = typed(value.clone()).map_err(invalid)?;
            snapshot
                .segment_claims
                .insert(claim.name_any(), std::sync::Arc::new(claim));
            Ok(true)
        }
        Some("NodeAgent") => Ok(true),
        _ => Ok(false),
    }
}

/// Reads every neutrino object under `path`. Objects of other API groups
/// The YAML parser's limits, raised from its defaults (1,024 documents and
/// 250,000 nodes to a file) to what a folder describing a large cluster
/// holds: 100,000 Ports in one file is about 1.5 million nodes. Alias
/// expansion keeps the parser's own limits.
fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: 1_000_000,
            max_nodes: 50_000_000,
            max_events: 200_000_000,
            max_reader_input_bytes: Some(2 << 30),
            max_total_scalar_bytes: 2 << 30,
        },
    }
}

/// (a Namespace, say) are skipped. Every error is reported, not just the first.
pub fn load(path: &Path) -> Result<Manifests, Vec<LoadError>> {
    let mut manifests = Manifests::default();
    let mut errors = Vec::new();
    for file in files(path).map_err(|e| vec![e])? {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(source) => {
                errors.push(LoadError::Io { path: file, source });
                continue;
            }
        };
        let documents: Vec<Value> = match serde_saphyr::from_multiple_with_options(&text, options())
        {
            Ok(d) => d,
            Err(e) => {
                errors.push(LoadError::Yaml {
                    path: file,
                    message: e.to_string(),
                });
                continue;
            }
        };
        // A `kubectl get -o yaml` of several objects is one List document.
        let documents = documents
            .into_iter()
            .enumerate()
            .flat_map(|(i, value)| match value {
                Value::Object(ref map)
                    if map.get("kind").and_then(Value::as_str) == Some("List") =>
                {
                    let items = map
                        .get("items")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    items.into_iter().map(|item| (i, item)).collect::<Vec<_>>()
                }
                value => vec![(i, value)],
            });
        for (i, value) in documents {
            if value.is_null() {
                continue;
            }
            let source = Source {
                file: file.clone(),
                document: i + 1,
            };
            match secret(&value, &mut manifests, &source) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            }
            match bookkeeping(&value, &mut manifests.snapshot, &source) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            }
            match object(value, &source) {
                Ok(None) => {}
                Ok(Some(object)) => {
                    let id = object.id();
                    match manifests.snapshot.insert(object) {
                        Ok(()) => {
                            manifests.sources.insert(id, source);
                        }
                        Err(_) => errors.push(LoadError::Duplicate {
                            first: manifests.sources[&id].clone(),
                            object: id,
                            at: source,
                        }),
                    }
                }
                Err(e) => errors.push(e),
            }
        }
    }
    if errors.is_empty() {
        Ok(manifests)
    } else {
        Err(errors)
    }
}

/// Every object of `snapshot` as multi-document YAML, status included:
/// what `load` reads back.
pub fn dump(snapshot: &Snapshot) -> Result<String, serde_saphyr::SerializeError> {
    fn each<T: serde::Serialize>(
        out: &mut String,
        map: &BTreeMap<neutrino_core::Key, std::sync::Arc<T>>,
    ) -> Result<(), serde_saphyr::SerializeError> {
        for object in map.values() {
            out.push_str("---\n");
            out.push_str(&serde_saphyr::to_string(&**object)?);
        }
        Ok(())
    }
    let mut out = String::new();
    for_each_kind!(K => each(&mut out, K::of(snapshot))?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_many_thousand_documents_loads() {
        let dir = std::env::temp_dir().join(format!("neutrino-many-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let documents: String = (0..5_000)
            .map(|n| {
                format!(
                    "---\napiVersion: neutrino.dev/v1alpha1\nkind: Network\n\
                     metadata: {{name: net-{n}, namespace: big}}\nspec: {{type: vxlan}}\n"
                )
            })
            .collect();
        std::fs::write(dir.join("networks.yaml"), documents).unwrap();
        let loaded = load(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(loaded.unwrap().snapshot.networks.len(), 5_000);
    }

    #[test]
    fn a_dump_reads_back_the_same() {
        let dir =
            Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join("examples/three-tier");
        let first = load(&dir).unwrap().snapshot;
        let file = std::env::temp_dir().join(format!("neutrino-dump-{}.yaml", std::process::id()));
        std::fs::write(&file, dump(&first).unwrap()).unwrap();
        let again = load(&file);
        std::fs::remove_file(&file).unwrap();
        let again = again.unwrap().snapshot;
        // What examples/three-tier holds, written out rather than taken
        // from the first load, so a dump that loses objects cannot pass.
        let ids = |s: &Snapshot| -> Vec<String> {
            let mut ids = Vec::new();
            for_each_kind!(K => {
                ids.extend(K::of(s).keys().map(|k| format!("{} {k}", K::KIND)));
            });
            ids
        };
        assert_eq!(
            ids(&again),
            [
                "Network infra/public",
                "Network shop/app",
                "Network shop/db",
                "Network shop/web",
                "Subnet infra/public-v4",
                "Subnet shop/app-v4",
                "Subnet shop/db-v4",
                "Subnet shop/web-v4",
                "Port shop/app-1",
                "Port shop/db-1",
                "Port shop/web-1",
                "Router shop/edge",
                "FloatingIP shop/web-1-public",
                "SecurityGroup shop/app",
                "SecurityGroup shop/db",
                "SecurityGroup shop/web",
            ]
        );
        let web = &again.subnets[&neutrino_core::Key::new("shop", "web-v4")].spec;
        assert_eq!(
            (web.network.as_str(), web.cidr.as_str()),
            ("web", "10.20.1.0/24")
        );
        assert_eq!(web.dns_nameservers, ["203.0.113.53"]);
        assert_eq!(dump(&again).unwrap(), dump(&first).unwrap());
    }
}
