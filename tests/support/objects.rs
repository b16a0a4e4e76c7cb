//! The objects a test applies, built rather than pasted: each kind's
//! apiVersion, kind and metadata written once, the spec given as JSON.
//! The result is YAML (JSON is YAML), one document per object, as the lab
//! and kubectl read it.

use serde_json::{Value, json};

const NEUTRINO: &str = "neutrino.dev/v1alpha1";

/// Objects in the order they were added.
#[derive(Clone, Debug, Default)]
pub struct Objects(Vec<Value>);

impl Objects {
    pub fn new() -> Self {
        Self::default()
    }

    /// Any object: `kind` of `api_version`, named `namespace/name`, with
    /// `body` beside its metadata (`spec`, `stringData`, ...).
    pub fn object(mut self, api_version: &str, kind: &str, at: &str, body: Value) -> Self {
        let (namespace, name) = at
            .split_once('/')
            .expect("objects are named namespace/name");
        let head = json!({
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace},
        });
        self.0.push(merged(head, body));
        self
    }

    fn neutrino(self, kind: &str, at: &str, spec: Value) -> Self {
        self.object(NEUTRINO, kind, at, json!({ "spec": spec }))
    }

    /// A VXLAN Network.
    pub fn network(self, at: &str) -> Self {
        self.neutrino("Network", at, json!({"type": "vxlan"}))
    }

    /// A Network with `spec`.
    pub fn network_with(self, at: &str, spec: Value) -> Self {
        self.neutrino("Network", at, spec)
    }

    /// A Subnet of `network` on `cidr`, with `more` of its spec.
    pub fn subnet(self, at: &str, network: &str, cidr: &str, more: Value) -> Self {
        let spec = merged(json!({"network": network, "cidr": cidr}), more);
        self.neutrino("Subnet", at, spec)
    }

    /// A Port on `network` bound to `node`, with `more` of its spec.
    pub fn port(self, at: &str, network: &str, node: &str, more: Value) -> Self {
        let spec = merged(json!({"network": network, "nodeName": node}), more);
        self.neutrino("Port", at, spec)
    }

    /// A SecurityGroup with `rules`.
    pub fn security_group(self, at: &str, rules: Value) -> Self {
        self.neutrino("SecurityGroup", at, json!({ "rules": rules }))
    }

    pub fn router(self, at: &str, spec: Value) -> Self {
        self.neutrino("Router", at, spec)
    }

    /// A Secret with `string_data`.
    pub fn secret(self, at: &str, string_data: Value) -> Self {
        self.object("v1", "Secret", at, json!({ "stringData": string_data }))
    }

    /// The same objects but `name`'s (of any kind, in any namespace).
    pub fn without(mut self, name: &str) -> Self {
        self.0.retain(|o| o["metadata"]["name"] != name);
        self
    }

    /// The same objects and `more`'s after them.
    pub fn and(mut self, more: Objects) -> Self {
        self.0.extend(more.0);
        self
    }

    pub fn yaml(&self) -> String {
        let documents: Vec<String> = self.0.iter().map(Value::to_string).collect();
        documents.join("\n---\n") + "\n"
    }
}

/// A Port's `fixedIPs`: `address` on `subnet`.
pub fn fixed(subnet: &str, address: &str) -> Value {
    json!({"fixedIPs": [{"subnet": subnet, "ipAddress": address}]})
}

/// `base` with `more`'s keys set over it.
pub fn merged(mut base: Value, more: Value) -> Value {
    for (key, value) in more.as_object().expect("what is merged is an object") {
        base[key] = value.clone();
    }
    base
}
