//! Identities of the objects the core reasons about.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

use super::Kind;

/// Whether `name` is a DNS label (RFC 1123): what object names, hostnames
/// and each part of a Secret's name must be.
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !name.is_empty()
        && name.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// Whether `name` is a DNS subdomain: dot-separated labels, at most 253
/// characters (the names of Secrets and most Kubernetes objects).
pub fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

/// A namespaced name: the identity of one object of a known kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key a reference written in this object's spec points at: always
    /// in this namespace. A reference never leaves its tenant unless the
    /// field is one that may ([`Key::shared_reference`]): a name with a
    /// slash is a name no object has, and is never found.
    pub fn reference(&self, reference: &str) -> Key {
        Key::new(self.namespace.clone(), reference)
    }

    /// The key a reference to what may be shared across namespaces on
    /// purpose (an external network) points at: `name` stays in this
    /// namespace, `namespace/name` leaves it. The resolver then checks that
    /// what it finds there is shared.
    pub fn shared_reference(&self, reference: &str) -> Key {
        match reference.split_once('/') {
            Some((namespace, name)) => Key::new(namespace, name),
            None => Key::new(self.namespace.clone(), reference),
        }
    }

    /// How a reference from an object in `from` spells this key.
    pub fn spelled_from(&self, from: &str) -> String {
        if self.namespace == from {
            self.name.clone()
        } else {
            self.to_string()
        }
    }
}

/// Serialized as `namespace/name`, as people write it.
impl Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let (namespace, name) = (text.split_once('/'))
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not namespace/name")))?;
        Ok(Key::new(namespace, name))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A kind and a key: names an object in messages.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectId {
    pub kind: Kind,
    pub key: Key,
}

impl ObjectId {
    pub fn new(kind: Kind, key: Key) -> Self {
        Self { kind, key }
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels_and_subdomains() {
        for good in ["a", "web-1", "0abc"] {
            assert!(is_dns_label(good) && is_dns_subdomain(good), "{good}");
        }
        for bad in ["", "-a", "a-", "Web", "a_b", "a.b", &"x".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
        assert!(is_dns_subdomain("boot.web-1"));
        for bad in ["a..b", ".a", "a.", "A.b"] {
            assert!(!is_dns_subdomain(bad), "{bad}");
        }
    }
}
