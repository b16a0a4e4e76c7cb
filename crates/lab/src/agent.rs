//! The lab's agent process for one node, and `lab status`.
//!
//! The agent does what a cluster agent does with what it watches: it reads
//! the objects (with the allocations recorded in their status), plans its
//! node, and applies the plan — whenever the lab publishes a new generation,
//! and every few seconds besides, so that a dnsmasq that died comes back.

use std::fmt::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::state::{AgentStatus, Files, LabState};
use super::{Lab, LabError, timestamp};
use neutrino_api::{NodeRealisation, PortServices, ServiceEndpoint};
use neutrino_core::metadata::{self, Instance, Listener, Refusal};
use neutrino_core::plan::plan_node;
use neutrino_core::resolve::Resolution;
use neutrino_core::services::port_services;
use neutrino_core::xtables::Choice;
use neutrino_core::{ClusterConfig, Snapshot, resolve};
use neutrino_core::{Kind, ObjectId};
use neutrino_dataplane::agent::{Agent, AgentConfig, namespace_prefix};
use neutrino_dataplane::metadata::{Directory, SecretRead};

/// How often an agent resyncs with nothing new published.
const RESYNC: Duration = Duration::from_secs(2);

/// Runs `node`'s agent until SIGTERM.
pub async fn run(files: Files, node: &str) -> Result<(), LabError> {
    let state = files
        .read_state()
        .map_err(|e| LabError::io("reading the lab state".into(), e))?;
    let namespace = Lab::node_namespace(&Lab::prefix(&state), node);
    let agent = Agent::new(AgentConfig {
        netns: Some(namespace.clone()),
        namespace_prefix: namespace_prefix(Some(&namespace)),
        state_dir: files.node_dir(node),
        iptables: Choice::Auto,
        drift_check: RESYNC,
    })
    .await?
    .serving_metadata(Arc::new(Published {
        files: files.clone(),
    }));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| LabError::io("waiting for SIGTERM".into(), e))?;
    let mut applied = None;
    let mut last = Instant::now();
    loop {
        let generation = files.read_generation();
        if applied != Some(generation) || last.elapsed() >= RESYNC {
            last = Instant::now();
            let status = match apply_once(&files, &agent, node, generation).await {
                Ok(status) => status,
                Err(e) => AgentStatus {
                    generation,
                    errors: vec![e.to_string()],
                    at: timestamp(),
                    ..AgentStatus::default()
                },
            };
            if status.writes > 0 || !status.errors.is_empty() {
                tracing::info!(node, generation, writes = status.writes, errors = ?status.errors, "applied");
            }
            let text =
                serde_json::to_string(&status).map_err(|e| LabError::Setup(e.to_string()))?;
            super::state::write_atomic(&files.agent_status(node), text.as_bytes())
                .map_err(|e| LabError::io("writing the agent's status".into(), e))?;
            applied = Some(generation);
        }
        tokio::select! {
            _ = terminate.recv() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// What the lab's metadata service reads: the objects the lab published,
/// statuses included, and the Secrets beside them. Read per request: the
/// lab is small, and a request sees the latest generation.
struct Published {
    files: Files,
}

impl Directory for Published {
    fn caller(&self, listener: &Listener, address: IpAddr) -> Result<Instance, Refusal> {
        let snapshot = neutrino_manifest::load(&self.files.objects())
            .map(|m| m.snapshot)
            .unwrap_or_default();
        metadata::caller(&snapshot, listener, address)
    }

    fn secret<'a>(&'a self, namespace: &'a str, name: &'a str) -> SecretRead<'a> {
        Box::pin(async move {
            let file = self.files.secrets();
            if !file.exists() {
                return Ok(None);
            }
            let manifests = neutrino_manifest::load(&file).map_err(|errors| {
                (errors.iter().map(ToString::to_string))
                    .collect::<Vec<_>>()
                    .join("; ")
            })?;
            let key = neutrino_core::Key::new(namespace, name);
            Ok(manifests.secrets.get(&key).map(metadata::secret_data))
        })
    }
}

async fn apply_once(
    files: &Files,
    agent: &Agent,
    node: &str,
    generation: u64,
) -> Result<AgentStatus, LabError> {
    let config = files
        .read_cluster()
        .map_err(|e| LabError::io("reading the cluster file".into(), e))?;
    let snapshot = match neutrino_manifest::load(&files.objects()) {
        Ok(m) => m.snapshot,
        Err(errors) => {
            return Err(LabError::Manifests(
                errors.iter().map(ToString::to_string).collect(),
            ));
        }
    };
    let resolution = resolve(&snapshot, &config);
    let me = config
        .node(node)
        .ok_or_else(|| LabError::Setup(format!("node {node} is not in the cluster file")))?;
    let report = agent.apply(plan_node(&resolution, &config, me)).await;
    Ok(AgentStatus {
        generation,
        writes: report.writes,
        errors: report.errors,
        conflicts: report.conflicts,
        at: timestamp(),
    })
}

fn ready<T>(verdict: &Result<T, Vec<neutrino_core::Problem>>) -> String {
    match verdict {
        Ok(_) => "True".into(),
        Err(problems) => format!(
            "False ({}: {})",
            problems[0].reason.as_str(),
            problems
                .iter()
                .map(|p| format!("{}: {}", p.field, p.message))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}

/// One row per object: kind, name, readiness, what was allocated.
/// `ready_of` says an object's readiness where another judge than the
/// local resolution has the last word (a cluster's controller).
fn rows(
    resolution: &Resolution,
    ready_of: &dyn Fn(&str, &neutrino_core::Key) -> Option<String>,
) -> Vec<[String; 4]> {
    let mut rows = local_rows(resolution);
    for row in &mut rows {
        let key = row[1]
            .split_once('/')
            .map(|(namespace, name)| neutrino_core::Key::new(namespace, name));
        if let Some(ready) = key.and_then(|key| ready_of(&row[0], &key)) {
            row[2] = ready;
        }
    }
    rows
}

fn local_rows(resolution: &Resolution) -> Vec<[String; 4]> {
    let mut rows = Vec::new();
    for (key, v) in &resolution.networks {
        let details = v.as_ref().map_or(String::new(), |n| {
            let segment = n.segmentation_id.map_or(String::new(), |s| format!(" {s}"));
            format!("{}{segment}, mtu {}", n.network_type, n.mtu)
        });
        rows.push(["Network".into(), key.to_string(), ready(v), details]);
    }
    for (key, v) in &resolution.subnets {
        let details = v.as_ref().map_or(String::new(), |s| {
            format!(
                "{}, gateway {}, dhcp {}, {} used, {} free",
                s.cidr,
                s.gateway.map_or("-".into(), |g| g.to_string()),
                s.dhcp.map_or("-".into(), |d| d.to_string()),
                s.used,
                s.free
            )
        });
        rows.push(["Subnet".into(), key.to_string(), ready(v), details]);
    }
    for (key, v) in &resolution.ports {
        let details = v.as_ref().map_or(String::new(), |p| {
            let ips: Vec<String> = p.fixed_ips.iter().map(|(_, ip)| ip.to_string()).collect();
            format!(
                "{} {} on {}",
                ips.join(","),
                p.mac,
                p.node.as_deref().unwrap_or("(unbound)")
            )
        });
        rows.push(["Port".into(), key.to_string(), ready(v), details]);
    }
    for (key, v) in &resolution.routers {
        let details = v.as_ref().map_or(String::new(), |r| {
            let gateway = r
                .gateway
                .as_ref()
                .map_or("-".into(), |g| g.leg.address.to_string());
            format!(
                "on {}, {} interfaces, gateway {gateway}",
                r.node,
                r.interfaces.len()
            )
        });
        rows.push(["Router".into(), key.to_string(), ready(v), details]);
    }
    for (key, v) in &resolution.floating_ips {
        let details = v.as_ref().map_or(String::new(), |f| match &f.target {
            Some(t) => format!("{} -> {} ({}) via {}", f.address, t.fixed, t.port, t.router),
            None => format!("{} (unassigned)", f.address),
        });
        rows.push(["FloatingIP".into(), key.to_string(), ready(v), details]);
    }
    for (key, v) in &resolution.security_groups {
        let details = v.as_ref().map_or(String::new(), |g| {
            format!(
                "{} rules{}",
                g.rules.len(),
                if g.implicit {
                    " (implicit default)"
                } else {
                    ""
                }
            )
        });
        rows.push(["SecurityGroup".into(), key.to_string(), ready(v), details]);
    }
    rows
}

fn table<const N: usize>(out: &mut String, header: [&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::from("  ");
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ", width = widths[i]);
            }
        }
        text.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(header.to_vec()));
    for row in rows {
        let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
    }
}

/// `lab status` as text.
pub fn render_status(
    state: &LabState,
    config: &ClusterConfig,
    snapshot: &Snapshot,
    files: &Files,
    agent: impl Fn(&str) -> String,
) -> String {
    let mut out = String::new();
    let resolution = resolve(snapshot, config);
    let _ = writeln!(
        out,
        "Lab in {} (generation {}, {} nodes)\n",
        files.dir.display(),
        state.generation,
        config.nodes.len()
    );
    let _ = writeln!(out, "Objects");
    table(
        &mut out,
        ["KIND", "NAME", "READY", "ALLOCATED"],
        &rows(&resolution, &|_, _| None),
    );

    let _ = writeln!(out, "\nNodes");
    let now = timestamp();
    let nodes: Vec<[String; 5]> = config
        .nodes
        .iter()
        .map(|n| {
            let status = files.read_agent_status(&n.name);
            let realised = match &status {
                Some(s) if s.generation >= state.generation && s.errors.is_empty() => {
                    "yes".to_string()
                }
                Some(s) if !s.errors.is_empty() => format!("no: {}", s.errors.join("; ")),
                Some(s) => format!("no: at generation {}", s.generation),
                None => "no: agent has not reported".into(),
            };
            [
                n.name.clone(),
                n.tunnel_ip.to_string(),
                agent(&n.name),
                status.map_or("-".into(), |s| format!("{}s ago", now.saturating_sub(s.at))),
                realised,
            ]
        })
        .collect();
    table(
        &mut out,
        ["NODE", "TUNNEL IP", "AGENT", "LAST APPLY", "REALISED"],
        &nodes,
    );

    // A port is realised where its node's agent applied this generation
    // without an error.
    let realised_on: Vec<&str> = (nodes.iter())
        .filter(|row| row[4] == "yes")
        .map(|row| row[0].as_str())
        .collect();
    let realised = |id: &ObjectId| -> Option<NodeRealisation> {
        let node = match id.kind {
            Kind::Port => resolution.port(&id.key)?.node.clone()?,
            _ => return None,
        };
        let ready = i32::from(realised_on.contains(&node.as_str()));
        Some(NodeRealisation {
            desired: 1,
            ready,
            failed: Vec::new(),
        })
    };
    workloads_table(&mut out, state, &|port| {
        let state = resolution.port(port)?;
        port_services(port, state, &resolution, &realised)
    });
    out
}

/// The workloads, their leases, and what serves their ports (`services`,
/// by port) as a Port's status says it.
fn workloads_table(
    out: &mut String,
    state: &LabState,
    services: &dyn Fn(&neutrino_core::Key) -> Option<PortServices>,
) {
    let _ = writeln!(out, "\nWorkloads");
    let workloads: Vec<[String; 6]> = state
        .workloads
        .iter()
        .map(|(port, w)| {
            let lease = w.lease.as_ref().map_or("-".into(), |l| {
                let mut took = Vec::new();
                if !l.ip.is_empty() {
                    took.push(format!(
                        "{}/{} router {} mtu {}",
                        l.ip,
                        l.prefix,
                        if l.router.is_empty() { "-" } else { &l.router },
                        l.mtu
                    ));
                }
                took.extend(
                    l.ipv6
                        .iter()
                        .map(|v6| format!("{} ({})", v6.address, v6.by)),
                );
                took.join(", ")
            });
            let key = port
                .split_once('/')
                .map(|(namespace, name)| neutrino_core::Key::new(namespace, name));
            let served = key.and_then(|k| services(&k)).unwrap_or_default();
            let endpoints = |list: &[ServiceEndpoint]| {
                if list.is_empty() {
                    return "-".to_string();
                }
                (list.iter())
                    .map(|e| match e.kind.as_str() {
                        "Router" => format!("router {} {} ({})", e.name, e.address, e.node),
                        _ => format!("{} ({})", e.address, e.node),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            [
                port.clone(),
                w.node.clone(),
                w.namespace.clone(),
                lease,
                endpoints(&served.dhcp),
                endpoints(&served.metadata),
            ]
        })
        .collect();
    table(
        out,
        [
            "PORT",
            "NODE",
            "NAMESPACE",
            "DHCP LEASE",
            "DHCP SERVER",
            "METADATA",
        ],
        &workloads,
    );
}

/// `lab status` of a cluster lab: readiness as the cluster's objects say
/// it, nodes as their NodeAgent records say it.
pub fn render_cluster_status(
    state: &LabState,
    config: &ClusterConfig,
    snapshot: &Snapshot,
    agents: &[neutrino_api::NodeAgent],
    controller: Option<i32>,
    agent: impl Fn(&str) -> String,
) -> String {
    let mut out = String::new();
    let resolution = resolve(snapshot, config);
    let server = state
        .kubeconfig
        .as_ref()
        .map_or(String::new(), |k| k.display().to_string());
    let _ = writeln!(
        out,
        "Lab on the cluster of {server} ({} nodes; controller {})\n",
        config.nodes.len(),
        controller.map_or("not running".into(), |p| format!("running ({p})"))
    );
    let _ = writeln!(out, "Objects");
    table(
        &mut out,
        ["KIND", "NAME", "READY", "ALLOCATED"],
        &rows(&resolution, &|kind, key| {
            super::cluster::ready_text(snapshot, kind, key)
        }),
    );
    let _ = writeln!(out, "\nNodes");
    let now = k8s_openapi::jiff::Timestamp::now();
    let nodes: Vec<[String; 5]> = config
        .nodes
        .iter()
        .map(|n| {
            let record = agents
                .iter()
                .find(|a| a.metadata.name.as_deref() == Some(n.name.as_str()));
            let status = record.and_then(|a| a.status.as_ref());
            let heartbeat = status
                .and_then(|s| s.heartbeat.as_ref())
                .map_or("-".into(), |h| {
                    format!("{}s ago", (now - h.0).get_seconds())
                });
            let realised =
                match status.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready")) {
                    Some(c) if c.status == "True" => "yes".to_string(),
                    Some(c) => format!("no: {}", c.message),
                    None => "no: the agent has not reported".into(),
                };
            [
                n.name.clone(),
                record.map_or(n.tunnel_ip.to_string(), |a| a.spec.tunnel_ip.clone()),
                agent(&n.name),
                heartbeat,
                realised,
            ]
        })
        .collect();
    table(
        &mut out,
        ["NODE", "TUNNEL IP", "AGENT", "HEARTBEAT", "REALISED"],
        &nodes,
    );
    workloads_table(&mut out, state, &|port| {
        snapshot.ports.get(port)?.status.as_ref()?.services.clone()
    });
    out
}
