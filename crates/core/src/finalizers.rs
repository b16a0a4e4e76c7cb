//! Deletion that waits: a Network or Subnet that Ports (or Subnets,
//! Routers, FloatingIPs) still use keeps a finalizer, and says so in its
//! status, until the last of them is gone. Pure.

use kube_core::{Resource, ResourceExt};
use std::collections::BTreeMap;

use super::{Key, Kind, ObjectId, Snapshot};

/// The finalizer on every Network and Subnet.
pub const FINALIZER: &str = "neutrino.dev/in-use";

/// What to do about finalizers.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Finalizers {
    /// Objects that need the finalizer.
    pub add: Vec<ObjectId>,
    /// Objects being deleted that nothing uses any more.
    pub remove: Vec<ObjectId>,
    /// Objects being deleted that are still used, with what uses them.
    pub blocked: BTreeMap<ObjectId, Vec<String>>,
}

/// What `object` needs; `users` (a scan of the snapshot) is asked for only
/// when it is being deleted and holds the finalizer, the one case that
/// depends on them.
fn deciding<R: Resource>(
    kind: Kind,
    key: &Key,
    object: &R,
    users: impl FnOnce() -> Vec<String>,
    out: &mut Finalizers,
) {
    let id = ObjectId::new(kind, key.clone());
    let has = object.finalizers().iter().any(|f| f == FINALIZER);
    match (object.meta().deletion_timestamp.is_some(), has) {
        (false, false) => out.add.push(id),
        (true, true) => {
            let users = users();
            if users.is_empty() {
                out.remove.push(id);
            } else {
                out.blocked.insert(id, users);
            }
        }
        _ => {}
    }
}

/// The finalizer actions `snapshot` calls for.
pub fn finalizers(snapshot: &Snapshot) -> Finalizers {
    let mut out = Finalizers::default();
    for (key, network) in &snapshot.networks {
        let users = || {
            let mut users: Vec<String> = snapshot
                .subnets
                .iter()
                .filter(|(k, s)| k.reference(&s.spec.network) == *key)
                .map(|(k, _)| format!("subnet {k}"))
                .collect();
            users.extend(
                snapshot
                    .ports
                    .iter()
                    .filter(|(k, p)| k.reference(&p.spec.network) == *key)
                    .map(|(k, _)| format!("port {k}")),
            );
            users.extend(
                snapshot
                    .routers
                    .iter()
                    .filter(|(k, r)| {
                        r.spec
                            .external_gateway
                            .as_ref()
                            .is_some_and(|g| k.reference(&g.network) == *key)
                    })
                    .map(|(k, _)| format!("router {k}")),
            );
            users.extend(
                snapshot
                    .floating_ips
                    .iter()
                    .filter(|(k, f)| k.reference(&f.spec.network) == *key)
                    .map(|(k, _)| format!("floating IP {k}")),
            );
            users
        };
        deciding(Kind::Network, key, &**network, users, &mut out);
    }
    for (key, subnet) in &snapshot.subnets {
        let users = || {
            let mut users: Vec<String> = snapshot
                .ports
                .iter()
                .filter(|(k, p)| {
                    let on_network =
                        k.reference(&p.spec.network) == key.reference(&subnet.spec.network);
                    let named = p
                        .spec
                        .fixed_ips
                        .iter()
                        .any(|f| k.reference(&f.subnet) == *key);
                    named || (p.spec.fixed_ips.is_empty() && on_network)
                })
                .map(|(k, _)| format!("port {k}"))
                .collect();
            users.extend(
                snapshot
                    .routers
                    .iter()
                    .filter(|(k, r)| {
                        r.spec
                            .interfaces
                            .iter()
                            .any(|i| k.reference(&i.subnet) == *key)
                    })
                    .map(|(k, _)| format!("router {k}")),
            );
            users
        };
        deciding(Kind::Subnet, key, &**subnet, users, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use crate::fixtures::quickstart;

    #[test]
    fn networks_and_subnets_get_the_finalizer() {
        let f = finalizers(&quickstart());
        assert_eq!(f.add.len(), 2);
        assert!(f.remove.is_empty() && f.blocked.is_empty());
    }

    #[test]
    fn a_used_network_waits_and_a_free_one_goes() {
        let mut snapshot = quickstart();
        let blue = Key::new("tenant-a", "blue");
        let deleting = |s: &mut Snapshot| {
            let network = std::sync::Arc::make_mut(s.networks.get_mut(&blue).unwrap());
            network.metadata.finalizers = Some(vec![FINALIZER.into()]);
            network.metadata.deletion_timestamp =
                Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        };
        deleting(&mut snapshot);
        let f = finalizers(&snapshot);
        let users = &f.blocked[&ObjectId::new(Kind::Network, blue.clone())];
        assert_eq!(
            users,
            &[
                "subnet tenant-a/blue-v4",
                "port tenant-a/web-1",
                "port tenant-a/web-2"
            ]
        );

        snapshot.ports.clear();
        snapshot.subnets.clear();
        let f = finalizers(&snapshot);
        assert_eq!(f.remove, vec![ObjectId::new(Kind::Network, blue)]);
    }
}
