//! The attachments this node's agent made, one file each under its state
//! directory: what DEL, GC and the reaper need when the API server, the
//! pod or its namespace is already gone, and what survives the agent's
//! restart.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

/// One attachment: a container's interface on a Port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub container_id: String,
    pub ifname: String,
    /// The container's network namespace, as the runtime named it.
    pub netns: String,
    /// The network configuration's `name`: what GC names.
    pub network_name: String,
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    /// The Port, in the pod's namespace.
    pub port: String,
    /// Whether ADD made the Port for this pod (it goes with the pod), or the
    /// pod named one that outlives it (a VM's).
    pub made_for_pod: bool,
    /// Whether the pod waits beside the Port's holder on another node, the
    /// target of a live migration that has not switched over yet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub standby: bool,
}

impl Record {
    /// The Port it holds.
    pub fn port_key(&self) -> neutrino_core::Key {
        neutrino_core::Key::new(&self.namespace, &self.port)
    }

    /// Where it holds it.
    pub fn sandbox(&self) -> neutrino_core::attachment::Sandbox {
        neutrino_core::attachment::Sandbox {
            netns: self.netns.clone(),
            interface: self.ifname.clone(),
        }
    }
}

/// Whether `text` may stand in a file name: the characters the CNI
/// specification allows in a container ID, and no dot-only name.
fn safe(text: &str) -> bool {
    !text.is_empty()
        && !text.starts_with('.')
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Why an attachment cannot be recorded under the names it has.
pub fn unsafe_names(container_id: &str, ifname: &str) -> Option<String> {
    if !safe(container_id) {
        return Some(format!(
            "CNI_CONTAINERID {container_id:?}: only letters, digits, '_', '.' and '-' are allowed"
        ));
    }
    if !safe(ifname) || ifname.len() > 15 {
        return Some(format!(
            "CNI_IFNAME {ifname:?}: an interface name of at most 15 letters, digits, '_', '.' or '-'"
        ));
    }
    None
}

/// The records, in one directory.
#[derive(Clone, Debug)]
pub struct Records {
    dir: PathBuf,
}

impl Records {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Records { dir: dir.into() }
    }

    fn file(&self, container_id: &str, ifname: &str) -> PathBuf {
        self.dir.join(format!("{container_id}_{ifname}.json"))
    }

    /// Writes `record` whole or not at all.
    pub fn save(&self, record: &Record) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let file = self.file(&record.container_id, &record.ifname);
        let partial = file.with_extension("json.partial");
        std::fs::write(&partial, serde_json::to_vec_pretty(record)?)?;
        std::fs::rename(&partial, &file)
    }

    pub fn load(&self, container_id: &str, ifname: &str) -> io::Result<Option<Record>> {
        read(&self.file(container_id, ifname))
    }

    /// Forgets an attachment; one not recorded is fine.
    pub fn forget(&self, container_id: &str, ifname: &str) -> io::Result<()> {
        match std::fs::remove_file(self.file(container_id, ifname)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every record; unreadable files are named in the errors.
    pub fn all(&self) -> (Vec<Record>, Vec<String>) {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Default::default(),
            Err(e) => return (Vec::new(), vec![format!("{}: {e}", self.dir.display())]),
        };
        let (mut records, mut errors) = (Vec::new(), Vec::new());
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match read(&path) {
                Ok(Some(record)) => records.push(record),
                Ok(None) => {}
                Err(e) => errors.push(format!("{}: {e}", path.display())),
            }
        }
        records.sort_by(|a, b| (&a.container_id, &a.ifname).cmp(&(&b.container_id, &b.ifname)));
        (records, errors)
    }
}

fn read(path: &Path) -> io::Result<Option<Record>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(io::Error::other),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The attachments of network `network_name` a GC leaves out of its valid
/// list: the ones to remove.
pub fn collectable<'a>(
    records: &'a [Record],
    network_name: &str,
    valid: &BTreeSet<(String, String)>,
) -> Vec<&'a Record> {
    (records.iter())
        .filter(|r| r.network_name == network_name)
        .filter(|r| !valid.contains(&(r.container_id.clone(), r.ifname.clone())))
        .collect()
}

/// The `cni.dev/valid-attachments` of a GC's configuration: (container,
/// interface) pairs.
pub fn valid_attachments(conf: &serde_json::Value) -> Result<BTreeSet<(String, String)>, String> {
    let Some(list) = conf.get("cni.dev/valid-attachments") else {
        return Ok(BTreeSet::new());
    };
    let list = list
        .as_array()
        .ok_or("cni.dev/valid-attachments: not a list")?;
    (list.iter().enumerate())
        .map(|(i, entry)| {
            let field = |name: &str| {
                entry
                    .get(name)
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
                    .ok_or_else(|| {
                        format!("cni.dev/valid-attachments[{i}].{name}: missing or not a string")
                    })
            };
            Ok((field("containerID")?, field("ifname")?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(container: &str, ifname: &str, network: &str) -> Record {
        Record {
            container_id: container.into(),
            ifname: ifname.into(),
            netns: "/var/run/netns/x".into(),
            network_name: network.into(),
            namespace: "tenant".into(),
            pod: "web-0".into(),
            pod_uid: "uid".into(),
            port: "web-0-net1".into(),
            made_for_pod: true,
            standby: false,
        }
    }

    #[test]
    fn records_are_saved_listed_and_forgotten() {
        let dir = std::env::temp_dir().join(format!("neutrino-records-{}", std::process::id()));
        let records = Records::new(&dir);
        let one = record("c1", "net1", "tenant-net");
        records.save(&one).unwrap();
        records.save(&record("c2", "net1", "tenant-net")).unwrap();
        assert_eq!(records.load("c1", "net1").unwrap(), Some(one.clone()));
        records.forget("c2", "net1").unwrap();
        records.forget("c2", "net1").unwrap();
        assert_eq!(records.all(), (vec![one], vec![]));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn gc_takes_the_networks_attachments_missing_from_the_valid_list() {
        let records = [
            record("c1", "net1", "tenant-net"),
            record("c2", "net1", "tenant-net"),
            record("c3", "net1", "other-net"),
        ];
        let conf = serde_json::json!({"cni.dev/valid-attachments": [
            {"containerID": "c1", "ifname": "net1"}
        ]});
        let valid = valid_attachments(&conf).unwrap();
        let gone: Vec<&str> = collectable(&records, "tenant-net", &valid)
            .iter()
            .map(|r| &*r.container_id)
            .collect();
        assert_eq!(gone, ["c2"]);
        let bad = serde_json::json!({"cni.dev/valid-attachments": [{"ifname": "net1"}]});
        assert_eq!(
            valid_attachments(&bad).unwrap_err(),
            "cni.dev/valid-attachments[0].containerID: missing or not a string"
        );
    }

    #[test]
    fn names_that_cannot_be_file_names_are_refused() {
        assert_eq!(unsafe_names("c0ffee", "net1"), None);
        assert!(
            unsafe_names("../x", "net1")
                .unwrap()
                .contains("CNI_CONTAINERID")
        );
        assert!(
            unsafe_names("c0ffee", "a/b")
                .unwrap()
                .contains("CNI_IFNAME")
        );
        assert!(unsafe_names("c0ffee", "sixteen-chars-xx").is_some());
    }
}
