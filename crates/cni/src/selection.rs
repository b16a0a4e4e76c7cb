//! What a pod asks of Multus before its sandbox exists: the networks its
//! `k8s.v1.cni.cncf.io/networks` annotation selects, and the configuration
//! Multus will hand neutrino for each. From these the agent makes a pod's
//! Ports as soon as the pod is bound to its node, so that the ADD finds
//! them allocated and plugged.
//!
//! Multus names the interface of the n-th selected network `net<n>` unless
//! the selection names one, and passes the selection's `ips` and `mac` in
//! `runtimeConfig` to a delegate that declares those capabilities.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::conf::NetConf;

/// The pod annotation that selects networks (the Network Plumbing Working
/// Group's, which Multus reads).
pub const NETWORKS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks";

/// One network the annotation selects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Selection {
    /// The NetworkAttachmentDefinition.
    pub name: String,
    /// Its namespace; the pod's when empty.
    #[serde(default)]
    pub namespace: String,
    /// The interface; Multus's `net<n>` when empty.
    #[serde(default)]
    pub interface: String,
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub mac: Option<String>,
}

/// Why an annotation cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("annotation {NETWORKS_ANNOTATION}: {0}")]
pub struct SelectionError(String);

/// The networks `annotation` selects for a pod in `namespace`, each with
/// its namespace and interface filled in as Multus fills them.
pub fn selections(annotation: &str, namespace: &str) -> Result<Vec<Selection>, SelectionError> {
    let text = annotation.trim();
    let mut selected: Vec<Selection> = if text.starts_with('[') {
        serde_json::from_str(text)
            .map_err(|e| SelectionError(format!("not a JSON list of selections: {e}")))?
    } else {
        (text.split(','))
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(short_form)
            .collect::<Result<_, _>>()?
    };
    for (n, selection) in selected.iter_mut().enumerate() {
        if selection.name.is_empty() {
            return Err(SelectionError(format!(
                "selection {} names no network",
                n + 1
            )));
        }
        if selection.namespace.is_empty() {
            selection.namespace = namespace.into();
        }
        if selection.interface.is_empty() {
            selection.interface = format!("net{}", n + 1);
        }
    }
    Ok(selected)
}

/// `[namespace/]name[@interface]`.
fn short_form(item: &str) -> Result<Selection, SelectionError> {
    let (rest, interface) = item.split_once('@').unwrap_or((item, ""));
    let (namespace, name) = rest.split_once('/').unwrap_or(("", rest));
    if name.is_empty() || name.contains('/') {
        return Err(SelectionError(format!(
            "{item:?} is not [namespace/]name[@interface]"
        )));
    }
    Ok(Selection {
        name: name.into(),
        namespace: namespace.into(),
        interface: interface.into(),
        ..Selection::default()
    })
}

/// The configuration Multus hands neutrino for `selection`, from the
/// definition's `config`: `None` when the definition is not neutrino's
/// (another plugin's, or text that does not read).
pub fn delegate_conf(config: &str, selection: &Selection) -> Option<NetConf> {
    let mut conf: Map<String, Value> = serde_json::from_str(config).ok()?;
    // A list's neutrino plugin, with the list's name and version as a
    // runtime passes them to each plugin.
    if let Some(Value::Array(plugins)) = conf.get("plugins") {
        let plugin = plugins
            .iter()
            .find(|p| p.get("type").and_then(Value::as_str) == Some("neutrino"))?;
        let mut single = plugin.as_object()?.clone();
        for key in ["name", "cniVersion"] {
            if let Some(value) = conf.get(key) {
                single.insert(key.into(), value.clone());
            }
        }
        conf = single;
    }
    let capable = |what: &str| {
        conf.get("capabilities")
            .and_then(|c| c.get(what))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    let mut runtime = Map::new();
    if capable("ips") && !selection.ips.is_empty() {
        runtime.insert("ips".into(), selection.ips.clone().into());
    }
    if let Some(mac) = selection.mac.as_ref().filter(|_| capable("mac")) {
        runtime.insert("mac".into(), mac.clone().into());
    }
    if !runtime.is_empty() {
        conf.insert("runtimeConfig".into(), runtime.into());
    }
    NetConf::parse(&serde_json::to_vec(&conf).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(list: &[Selection]) -> Vec<(String, String, String)> {
        (list.iter())
            .map(|s| (s.namespace.clone(), s.name.clone(), s.interface.clone()))
            .collect()
    }

    #[test]
    fn the_short_form_names_networks_and_multus_numbers_their_interfaces() {
        let list = selections("blue, other/red@vlan7 ,green", "tenant-a").unwrap();
        assert_eq!(
            names(&list),
            [
                ("tenant-a".into(), "blue".into(), "net1".into()),
                ("other".into(), "red".into(), "vlan7".into()),
                ("tenant-a".into(), "green".into(), "net3".into()),
            ]
        );
    }

    #[test]
    fn the_json_form_carries_addresses_and_mac() {
        let text = json!([
            {"name": "blue", "ips": ["10.10.0.77/24"], "mac": "02:00:00:00:00:01"},
            {"name": "red", "namespace": "other", "interface": "east"},
        ])
        .to_string();
        let list = selections(&text, "tenant-a").unwrap();
        assert_eq!(list[0].ips, ["10.10.0.77/24"]);
        assert_eq!(list[0].mac.as_deref(), Some("02:00:00:00:00:01"));
        assert_eq!(
            names(&list),
            [
                ("tenant-a".into(), "blue".into(), "net1".into()),
                ("other".into(), "red".into(), "east".into()),
            ]
        );
    }

    #[test]
    fn unreadable_annotations_are_refused() {
        for bad in [
            "[{\"namespace\": \"x\"}]",
            "[not json",
            "a/b/c",
            "@net1",
            "x/",
        ] {
            assert!(selections(bad, "ns").is_err(), "{bad}");
        }
        assert!(selections("", "ns").unwrap().is_empty());
    }

    fn blue() -> Selection {
        Selection {
            name: "blue".into(),
            namespace: "tenant-a".into(),
            interface: "net1".into(),
            ips: vec!["10.10.0.77/24".into()],
            mac: Some("02:00:00:00:00:01".into()),
        }
    }

    #[test]
    fn addresses_and_mac_pass_only_to_a_delegate_that_declares_them() {
        let capable = json!({
            "cniVersion": "1.0.0", "name": "blue", "type": "neutrino", "network": "blue",
            "capabilities": {"ips": true, "mac": true},
        });
        let conf = delegate_conf(&capable.to_string(), &blue()).unwrap();
        assert_eq!(conf.network, "blue");
        assert_eq!(conf.runtime_config.ips, ["10.10.0.77/24"]);
        assert_eq!(
            conf.runtime_config.mac.as_deref(),
            Some("02:00:00:00:00:01")
        );
        let plain =
            json!({"cniVersion": "1.0.0", "name": "blue", "type": "neutrino", "network": "blue"});
        let conf = delegate_conf(&plain.to_string(), &blue()).unwrap();
        assert!(conf.runtime_config.ips.is_empty());
        assert_eq!(conf.runtime_config.mac, None);
    }

    #[test]
    fn a_list_yields_its_neutrino_plugin_and_other_plugins_yield_nothing() {
        let list = json!({
            "cniVersion": "1.0.0", "name": "blue",
            "plugins": [{"type": "neutrino", "network": "blue"}, {"type": "tuning"}],
        });
        let conf = delegate_conf(&list.to_string(), &blue()).unwrap();
        assert_eq!(
            (conf.name.as_str(), conf.network.as_str()),
            ("blue", "blue")
        );
        let bridge = json!({"cniVersion": "1.0.0", "name": "b", "type": "bridge"});
        assert_eq!(delegate_conf(&bridge.to_string(), &blue()), None);
        assert_eq!(delegate_conf("not json", &blue()), None);
        // A neutrino configuration neutrino would refuse is not prepared.
        let broken = json!({"cniVersion": "1.0.0", "name": "b", "type": "neutrino"});
        assert_eq!(delegate_conf(&broken.to_string(), &blue()), None);
    }
}
