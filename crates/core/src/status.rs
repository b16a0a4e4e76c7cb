//! What the controller writes to each object's `status`: the allocations of
//! a [`Resolution`] and a `Ready` condition. Pure: the caller passes the time.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube_core::Resource;
use std::collections::BTreeMap;

use super::resolve::{Resolution, Verdict};
use super::{Key, Problem, Reason, Snapshot};
use neutrino_api::{
    AllocatedIP, FloatingIPStatus, NetworkStatus, PortStatus, RouterGatewayStatus, RouterStatus,
    SecurityGroupStatus, SubnetStatus,
};

/// The reason of a `Ready=True` condition.
pub const READY_REASON: &str = "Allocated";

/// The `Ready` condition for a verdict. `previous` keeps the transition time
/// when the status does not change.
pub fn ready_condition<T>(
    verdict: &Verdict<T>,
    generation: i64,
    now: &Time,
    previous: &[Condition],
) -> Condition {
    let (status, reason, message) = match verdict {
        Ok(_) => (
            "True",
            READY_REASON.to_string(),
            "allocated and valid".to_string(),
        ),
        Err(problems) => (
            "False",
            problems
                .first()
                .map_or("Invalid", |p| p.reason.as_str())
                .to_string(),
            problems
                .iter()
                .map(problem_text)
                .collect::<Vec<_>>()
                .join("; "),
        ),
    };
    condition("Ready", status, reason, message, generation, now, previous)
}

fn condition(
    kind: &str,
    status: &str,
    reason: String,
    message: String,
    generation: i64,
    now: &Time,
    previous: &[Condition],
) -> Condition {
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == kind && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: kind.into(),
        status: status.into(),
        reason,
        message,
        observed_generation: Some(generation),
        last_transition_time,
    }
}

/// The conditions of a verdict, as kstatus (Argo CD, Flux) reads them:
/// `Ready`, and beside a `Ready=False` either `Reconciling` (waiting for
/// another object) or `Stalled` (it needs the user to change something).
pub fn verdict_conditions<T>(
    verdict: &Verdict<T>,
    generation: i64,
    now: &Time,
    previous: &[Condition],
) -> Vec<Condition> {
    let ready = ready_condition(verdict, generation, now, previous);
    let mut all = vec![ready.clone()];
    if let Err(problems) = verdict {
        let waiting = problems
            .iter()
            .all(|p| p.reason == Reason::DependencyNotReady);
        let kind = if waiting { "Reconciling" } else { "Stalled" };
        all.push(condition(
            kind,
            "True",
            ready.reason,
            ready.message,
            generation,
            now,
            previous,
        ));
    }
    all
}

/// The conditions of an object whose deletion waits for its users.
pub fn deleting(
    generation: i64,
    now: &Time,
    users: &[String],
    previous: &[Condition],
) -> Vec<Condition> {
    let message = format!(
        "being deleted; waits until these no longer use it: {}",
        users.join(", ")
    );
    vec![
        condition(
            "Ready",
            "False",
            "Deleting".into(),
            message.clone(),
            generation,
            now,
            previous,
        ),
        condition(
            "Reconciling",
            "True",
            "Deleting".into(),
            message,
            generation,
            now,
            previous,
        ),
    ]
}

/// The reason of the conditions an object has while its claims are made.
pub const ALLOCATING_REASON: &str = "Allocating";

/// The conditions of an object whose allocations are being claimed:
/// `Ready=Unknown` and `Reconciling=True`, so no tool takes the silence of
/// an empty status for health.
pub fn allocating(generation: i64, now: &Time) -> Vec<Condition> {
    let message = "claiming its allocations".to_string();
    vec![
        condition(
            "Ready",
            "Unknown",
            ALLOCATING_REASON.into(),
            message.clone(),
            generation,
            now,
            &[],
        ),
        condition(
            "Reconciling",
            "True",
            ALLOCATING_REASON.into(),
            message,
            generation,
            now,
            &[],
        ),
    ]
}

fn problem_text(problem: &Problem) -> String {
    format!("{}: {}", problem.field, problem.message)
}

fn generation<R: Resource>(object: &R) -> i64 {
    object.meta().generation.unwrap_or(0)
}

fn spell(from: &Key, key: &Key) -> String {
    key.spelled_from(&from.namespace)
}

/// Writes every object's status from `resolution`, as the controller would.
pub fn apply(snapshot: &mut Snapshot, resolution: &Resolution, now: &Time) {
    fn conditions<R, S>(
        object: &R,
        verdict: &Verdict<S>,
        now: &Time,
        previous: Option<&[Condition]>,
    ) -> Vec<Condition>
    where
        R: Resource,
    {
        verdict_conditions(verdict, generation(object), now, previous.unwrap_or(&[]))
    }
    fn each<R, S>(
        map: &mut BTreeMap<Key, R>,
        verdicts: &BTreeMap<Key, Verdict<S>>,
        mut write: impl FnMut(&Key, &mut R, &Verdict<S>),
    ) {
        for (key, object) in map.iter_mut() {
            if let Some(verdict) = verdicts.get(key) {
                write(key, object, verdict);
            }
        }
    }

    each(&mut snapshot.networks, &resolution.networks, |_, o, v| {
        let state = v.as_ref().ok();
        o.status = Some(NetworkStatus {
            nodes: o.status.as_ref().and_then(|s| s.nodes.clone()),
            observed_generation: generation(o),
            segmentation_id: state.and_then(|s| s.segmentation_id),
            mtu: state.map(|s| s.mtu),
            conditions: conditions(
                o,
                v,
                now,
                o.status.as_ref().map(|s| s.conditions.as_slice()),
            ),
        });
    });
    each(&mut snapshot.subnets, &resolution.subnets, |_, o, v| {
        let state = v.as_ref().ok();
        o.status = Some(SubnetStatus {
            nodes: o.status.as_ref().and_then(|s| s.nodes.clone()),
            observed_generation: generation(o),
            gateway_ip: state.and_then(|s| s.gateway).map(|g| g.to_string()),
            dhcp_ip: state.and_then(|s| s.dhcp).map(|d| d.to_string()),
            used_addresses: state.map_or(0, |s| i64::try_from(s.used).unwrap_or(i64::MAX)),
            free_addresses: state.map_or(0, |s| i64::try_from(s.free).unwrap_or(i64::MAX)),
            conditions: conditions(
                o,
                v,
                now,
                o.status.as_ref().map(|s| s.conditions.as_slice()),
            ),
        });
    });
    each(&mut snapshot.ports, &resolution.ports, |key, o, v| {
        let state = v.as_ref().ok();
        o.status = Some(PortStatus {
            nodes: o.status.as_ref().and_then(|s| s.nodes.clone()),
            observed_generation: generation(o),
            fixed_ips: state
                .map(|s| {
                    s.fixed_ips
                        .iter()
                        .map(|(subnet, ip)| AllocatedIP {
                            subnet: spell(key, subnet),
                            ip_address: ip.to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            mac_address: state.map(|s| s.mac.to_string()),
            mtu: state.map(|s| s.mtu),
            conditions: conditions(
                o,
                v,
                now,
                o.status.as_ref().map(|s| s.conditions.as_slice()),
            ),
        });
    });
    each(&mut snapshot.routers, &resolution.routers, |key, o, v| {
        let state = v.as_ref().ok();
        o.status = Some(RouterStatus {
            nodes: o.status.as_ref().and_then(|s| s.nodes.clone()),
            observed_generation: generation(o),
            node: state.map(|s| s.node.clone()),
            external_gateway: state
                .and_then(|s| s.gateway.as_ref())
                .map(|g| RouterGatewayStatus {
                    network: spell(key, &g.leg.network),
                    ip_address: g.leg.address.addr().to_string(),
                }),
            conditions: conditions(
                o,
                v,
                now,
                o.status.as_ref().map(|s| s.conditions.as_slice()),
            ),
        });
    });
    each(
        &mut snapshot.floating_ips,
        &resolution.floating_ips,
        |key, o, v| {
            let state = v.as_ref().ok();
            let target = state.and_then(|s| s.target.as_ref());
            o.status = Some(FloatingIPStatus {
                nodes: o.status.as_ref().and_then(|s| s.nodes.clone()),
                observed_generation: generation(o),
                floating_ip_address: state.map(|s| s.address.to_string()),
                fixed_ip_address: target.map(|t| t.fixed.to_string()),
                router: target.map(|t| spell(key, &t.router)),
                conditions: conditions(
                    o,
                    v,
                    now,
                    o.status.as_ref().map(|s| s.conditions.as_slice()),
                ),
            });
        },
    );
    let members = |group: &Key| {
        resolution
            .ready_ports()
            .filter(|(_, p)| p.security_groups.contains(group))
            .count() as i64
    };
    each(
        &mut snapshot.security_groups,
        &resolution.security_groups,
        |key, o, v| {
            o.status = Some(SecurityGroupStatus {
                nodes: o.status.as_ref().and_then(|s| s.nodes.clone()),
                observed_generation: generation(o),
                rule_count: o.spec.rules.len() as i64,
                port_count: members(key),
                conditions: conditions(
                    o,
                    v,
                    now,
                    o.status.as_ref().map(|s| s.conditions.as_slice()),
                ),
            });
        },
    );
}

/// Whether an object's status says Ready for the spec it has now.
fn ready_now<R: Resource>(object: &R, conditions: Option<&[Condition]>) -> bool {
    let generation = generation(object);
    conditions.into_iter().flatten().any(|c| {
        c.type_ == "Ready" && c.status == "True" && c.observed_generation.unwrap_or(0) == generation
    })
}

/// Only the objects the controller has found Ready for their current spec,
/// with their recorded allocations: what an agent may realise. Security
/// groups are kept whole (an implicit default group has no object).
pub fn ready_only(snapshot: &Snapshot) -> Snapshot {
    fn keep<R: Resource + Clone>(
        map: &BTreeMap<Key, R>,
        conditions: impl Fn(&R) -> Option<&[Condition]>,
    ) -> BTreeMap<Key, R> {
        map.iter()
            .filter(|(_, o)| ready_now(*o, conditions(o)))
            .map(|(k, o)| (k.clone(), o.clone()))
            .collect()
    }
    Snapshot {
        networks: keep(&snapshot.networks, |o| {
            o.status.as_ref().map(|s| s.conditions.as_slice())
        }),
        subnets: keep(&snapshot.subnets, |o| {
            o.status.as_ref().map(|s| s.conditions.as_slice())
        }),
        ports: keep(&snapshot.ports, |o| {
            o.status.as_ref().map(|s| s.conditions.as_slice())
        }),
        routers: keep(&snapshot.routers, |o| {
            o.status.as_ref().map(|s| s.conditions.as_slice())
        }),
        floating_ips: keep(&snapshot.floating_ips, |o| {
            o.status.as_ref().map(|s| s.conditions.as_slice())
        }),
        security_groups: snapshot.security_groups.clone(),
        ip_claims: snapshot.ip_claims.clone(),
        segment_claims: snapshot.segment_claims.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClusterConfig, resolve};

    #[test]
    fn kstatus_reads_stalled_or_reconciling_beside_ready_false() {
        let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let id = crate::ObjectId::new(crate::Kind::Port, Key::new("t", "p"));
        let verdict =
            |reason| -> Verdict<()> { Err(vec![Problem::new(&id, "spec.network", reason, "x")]) };
        let kinds = |v: &Verdict<()>| -> Vec<(String, String)> {
            verdict_conditions(v, 3, &now, &[])
                .into_iter()
                .map(|c| (c.type_, c.status))
                .collect()
        };
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(kinds(&Ok(())), [pair("Ready", "True")]);
        assert_eq!(
            kinds(&verdict(Reason::InvalidSpec)),
            [pair("Ready", "False"), pair("Stalled", "True")]
        );
        assert_eq!(
            kinds(&verdict(Reason::DependencyNotReady)),
            [pair("Ready", "False"), pair("Reconciling", "True")]
        );
        let conditions = verdict_conditions(&verdict(Reason::InUse), 3, &now, &[]);
        assert!(conditions.iter().all(|c| c.observed_generation == Some(3)));
        assert_eq!(conditions[1].reason, "InUse");
    }

    #[test]
    fn only_what_is_ready_for_its_current_spec_is_realised() {
        let mut snapshot = crate::fixtures::quickstart();
        assert!(
            ready_only(&snapshot).ports.is_empty(),
            "nothing before the controller has spoken"
        );
        let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let resolution = resolve(&snapshot, &ClusterConfig::default());
        apply(&mut snapshot, &resolution, &now);
        assert_eq!(ready_only(&snapshot).ports.len(), 2);
        // A changed spec the controller has not looked at yet waits.
        let web1 = snapshot
            .ports
            .get_mut(&Key::new("tenant-a", "web-1"))
            .unwrap();
        web1.metadata.generation = Some(2);
        assert_eq!(ready_only(&snapshot).ports.len(), 1);
    }
}
