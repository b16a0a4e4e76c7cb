//! ADD, DEL and CHECK: one container interface on one Port.

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::migration::Answer;
use super::records::{self, Record};
use super::{FIELD_MANAGER, Service, owned_by, parse_conf};
use super::{migration, pods};
use crate::execute::bounded;
use neutrino_api::Port;
use neutrino_cni::NetConf;
use neutrino_cni::outcome::{Address, Attached, CniError, Code, Interface, Route};
use neutrino_cni::wire::Request;
use neutrino_core::Key;
use neutrino_core::allocate::Mac;
use neutrino_core::attachment::{
    self, ATTACHMENT_ANNOTATION, Configuration, HOLDER_ANNOTATION, Holder, Sandbox,
};
use neutrino_core::scope::Source;
use neutrino_core::takeover::{PORTS_ANNOTATION, Takeover, holder_of};
use neutrino_dataplane::netlink::NetlinkError;
use neutrino_dataplane::workload::{self, PlugError};

fn ms_since(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1e3
}

fn agent_error(msg: impl Into<String>, details: impl ToString) -> CniError {
    CniError::new(Code::Agent, msg, details.to_string())
}

fn environment(details: impl Into<String>) -> CniError {
    CniError::new(Code::InvalidEnvironment, "invalid CNI environment", details)
}

impl Service {
    pub(super) async fn add(&self, request: &Request) -> Result<Attached, CniError> {
        let conf = parse_conf(&request.conf)?;
        if let Some(why) = records::unsafe_names(&request.container_id, &request.ifname) {
            return Err(environment(why));
        }
        let netns = request
            .netns
            .clone()
            .ok_or_else(|| environment("CNI_NETNS is needed for ADD"))?;
        let started = Instant::now();
        let pod = self.pod(request).await?;
        let namespace = pod.namespace().unwrap_or_default();
        let (port, made_for_pod, standby) = match named_port(&pod, &conf, &request.ifname)? {
            Some(name) => match self.bind(&pod, &name, &conf, request).await? {
                Bound::Here => (name, false, None),
                Bound::Standby(port) => (name, false, Some(port)),
            },
            None => (self.make_port(&pod, request, &conf).await?, true, None),
        };
        let record = Record {
            container_id: request.container_id.clone(),
            ifname: request.ifname.clone(),
            netns: netns.clone(),
            network_name: conf.name.clone(),
            namespace: namespace.clone(),
            pod: pod.name_any(),
            pod_uid: pod.uid().unwrap_or_default(),
            port: port.clone(),
            made_for_pod,
            standby: standby.is_some(),
        };
        // Recorded before the wait, so that a DEL, GC or the reaper finds
        // what an ADD that timed out left.
        self.records
            .save(&record)
            .map_err(|e| agent_error("recording the attachment", e))?;
        let key = Key::new(&namespace, &port);
        tracing::debug!(port = %key, ms = ms_since(started), "ADD: the Port is the pod's");
        self.held.hold(key.clone(), record.sandbox());
        let configuration = match standby {
            Some(port) => self.stand_by(&key, &port, request, &record).await?,
            None => {
                self.plug(&key, &conf, request, Path::new(&netns), started)
                    .await?
            }
        };
        Ok(result(&configuration, &conf, &request.ifname, &netns))
    }

    /// Makes the Port's veth for the target pod of a live migration, and
    /// leaves it waiting for the holder to end (see [`migration`]).
    async fn stand_by(
        &self,
        key: &Key,
        port: &Port,
        request: &Request,
        record: &Record,
    ) -> Result<Configuration, CniError> {
        let configuration = migration::standby_configuration(&self.stores, key, port)?;
        let netns = Path::new(&record.netns);
        let node = self.node_netns.as_deref();
        let made = async {
            let _links = self.held.links().await;
            match workload::inspect(netns, &request.ifname).await? {
                Some(seen) if seen.mac != configuration.mac.0 => {
                    return Err(taken(netns, &request.ifname, &configuration));
                }
                Some(_) => {}
                None => {
                    workload::remove_link(node, &configuration.interface).await?;
                    let link = migration::standby_link(key, &configuration, netns, &request.ifname);
                    workload::make(node, &link).await?;
                }
            }
            workload::attach(node, &configuration.peer, netns, &request.ifname, &[], &[]).await
        };
        made.await
            .map_err(|e| agent_error(format!("making the standby of Port {key}"), e))?;
        tracing::info!(
            port = %key, pod = %record.pod, node = %self.node,
            "standing by for a live migration until the Port's holder ends"
        );
        tokio::spawn(self.activation(record.clone()).run());
        Ok(configuration)
    }

    /// The pod the call is for, on this node: as the node's pod watch has
    /// it, else as the API server does.
    async fn pod(&self, request: &Request) -> Result<Pod, CniError> {
        let arg = |name: &str| {
            request.args.get(name).filter(|v| !v.is_empty()).ok_or_else(|| {
                environment(format!(
                    "CNI_ARGS: {name} is needed; neutrino attaches Kubernetes pods (K8S_POD_NAMESPACE and K8S_POD_NAME)"
                ))
            })
        };
        let (namespace, name) = (arg("K8S_POD_NAMESPACE")?, arg("K8S_POD_NAME")?);
        let uid = request.args.get("K8S_POD_UID").map(String::as_str);
        if let Some(pod) = pods::cached(&self.pods, namespace, name, uid) {
            return Ok(pod);
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let pod = bounded(pods.get_opt(name))
            .await
            .map_err(|e| {
                CniError::new(
                    Code::TryAgainLater,
                    format!("reading pod {namespace}/{name}"),
                    e.to_string(),
                )
            })?
            .ok_or_else(|| {
                CniError::new(
                    Code::UnknownContainer,
                    format!("pod {namespace}/{name} does not exist"),
                    "",
                )
            })?;
        if let Some(uid) = request.args.get("K8S_POD_UID")
            && pod.uid().as_ref() != Some(uid)
        {
            return Err(CniError::new(
                Code::UnknownContainer,
                format!("pod {namespace}/{name} is no longer the one the runtime names"),
                format!("K8S_POD_UID {uid}, the pod's uid {:?}", pod.uid()),
            ));
        }
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        if node != Some(&self.node) {
            return Err(environment(format!(
                "pod {namespace}/{name} is on node {}, this agent's node is {}",
                node.unwrap_or("(none)"),
                self.node
            )));
        }
        Ok(pod)
    }

    /// The Port an attachment of `pod` on `interface` stands for, as made
    /// by `container_id`'s ADD (none, before the pod's sandbox is made).
    pub(super) fn wanted_port(
        &self,
        pod: &Pod,
        container_id: &str,
        interface: &str,
        conf: &NetConf,
    ) -> Result<Port, CniError> {
        let namespace = pod.namespace().unwrap_or_default();
        let subnets: BTreeMap<String, IpNet> = self
            .stores
            .subnets_of(&namespace, &conf.network)
            .into_iter()
            .collect();
        let ips = conf.requested_ips()?;
        let uid = pod.uid().unwrap_or_default();
        let name = pod.name_any();
        attachment::port(
            &attachment::Request {
                namespace: &namespace,
                pod: &name,
                pod_uid: &uid,
                container_id,
                interface,
                node: &self.node,
                network: &conf.network,
                security_groups: conf.security_groups.as_deref(),
                port_security: conf.port_security,
                ips: &ips,
                mac: conf.runtime_config.mac.as_deref(),
            },
            &subnets,
        )
        .map_err(|e| {
            CniError::new(
                Code::InvalidConfiguration,
                "the Port asked for",
                e.to_string(),
            )
        })
    }

    /// Makes (or finds) the Port ADD makes for a pod; its name.
    async fn make_port(
        &self,
        pod: &Pod,
        request: &Request,
        conf: &NetConf,
    ) -> Result<String, CniError> {
        let namespace = pod.namespace().unwrap_or_default();
        let uid = pod.uid().unwrap_or_default();
        let wanted = self.wanted_port(pod, &request.container_id, &request.ifname, conf)?;
        let port_name = wanted.name_any();
        let key = Key::new(&namespace, &port_name);
        // A pod's sandbox made again finds its Port as it left it: no write
        // (the annotation keeps naming the attachment that made it).
        if let Some(held) = self.stores.shared::<Port>(&key) {
            if !owned_by(&held, &uid) {
                return Err(CniError::new(
                    Code::TryAgainLater,
                    format!("Port {namespace}/{port_name} belongs to another pod"),
                    "a pod of the same name that is gone; it goes with that pod",
                ));
            }
            let same_spec =
                serde_json::to_value(&held.spec).ok() == serde_json::to_value(&wanted.spec).ok();
            if same_spec && held.annotations().contains_key(ATTACHMENT_ANNOTATION) {
                return Ok(port_name);
            }
        }
        let ports: Api<Port> = Api::namespaced(self.client.clone(), &namespace);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        bounded(ports.patch(&port_name, &params, &Patch::Apply(&wanted)))
            .await
            .map_err(|e| port_refused(&namespace, &port_name, e))?;
        Ok(port_name)
    }

    /// Binds the existing Port `name` to this node for `pod` — or, while
    /// the pod that holds it runs on another node, makes `pod` its
    /// standby (a VM's live migration).
    async fn bind(
        &self,
        pod: &Pod,
        name: &str,
        conf: &NetConf,
        request: &Request,
    ) -> Result<Bound, CniError> {
        let namespace = &pod.namespace().unwrap_or_default();
        let (container, ifname) = (&request.container_id, &request.ifname);
        let me = Holder {
            pod: pod.name_any(),
            uid: pod.uid().unwrap_or_default(),
        };
        let ports: Api<Port> = Api::namespaced(self.client.clone(), namespace);
        let named = |details: String| {
            CniError::new(
                Code::InvalidConfiguration,
                format!("pod annotation {PORTS_ANNOTATION} names Port {namespace}/{name}"),
                details,
            )
        };
        let port = bounded(ports.get_opt(name))
            .await
            .map_err(|e| {
                CniError::new(
                    Code::TryAgainLater,
                    format!("reading Port {namespace}/{name}"),
                    e.to_string(),
                )
            })?
            .ok_or_else(|| named("it does not exist".into()))?;
        if port.spec.network != conf.network {
            return Err(named(format!(
                "it is on network {}, the attachment's configuration is for network {}",
                port.spec.network, conf.network
            )));
        }
        let holder = holder_of(&port).filter(|h| *h != me);
        let elsewhere = (port.spec.node_name.as_deref()).filter(|n| **n != *self.node);
        if let (Some(node), Some(holder)) = (elsewhere, &holder) {
            let runs = migration::still_holds(&self.client, namespace, holder)
                .await
                .map_err(|e| {
                    CniError::new(
                        Code::TryAgainLater,
                        format!(
                            "reading pod {namespace}/{}, which holds Port {name}",
                            holder.pod
                        ),
                        e,
                    )
                })?;
            if runs && conf.pod_addresses {
                return Err(named(format!(
                    "pod {namespace}/{} on node {node} holds it and still runs; a second pod \
                     holds a Port only as the target of a VM's live migration, whose \
                     attachment takes no addresses (\"podAddresses\": false)",
                    holder.pod
                )));
            }
            if runs {
                return Ok(Bound::Standby(Box::new(port)));
            }
        }
        let claimed = port.annotations().contains_key(ATTACHMENT_ANNOTATION);
        if port.spec.node_name.as_deref() == Some(&self.node) && claimed && holder.is_none() {
            return Ok(Bound::Here);
        }
        if let Some(node) = elsewhere {
            // Another node's Port: the controller, which can see the pods,
            // moves it.
            let request = Takeover {
                node: self.node.clone(),
                pod: me,
                container_id: container.clone(),
                interface: ifname.clone(),
            };
            let key = Key::new(namespace, name);
            let asked = migration::ask_to_take_over(
                &self.client,
                &self.stores,
                &key,
                &request,
                self.patience,
            );
            let what = || format!("taking Port {namespace}/{name} over from node {node}");
            return match asked.await {
                Ok(Answer::Granted) => Ok(Bound::Here),
                Ok(Answer::Refused(why)) => Err(CniError::new(
                    Code::InvalidConfiguration,
                    what(),
                    format!("the controller refused: {why}"),
                )),
                Ok(Answer::Silent) => Err(CniError::new(
                    Code::TryAgainLater,
                    what(),
                    format!(
                        "the controller did not answer within {} s",
                        self.patience.as_secs()
                    ),
                )),
                Err(e) => Err(CniError::new(Code::TryAgainLater, what(), e)),
            };
        }
        // Claimed, the Port's veth is made only while a pod holds it.
        let body = json!({
            "apiVersion": Port::api_version(&()),
            "kind": Port::kind(&()),
            "metadata": {
                "name": name,
                "namespace": namespace,
                "annotations": {
                    ATTACHMENT_ANNOTATION: format!("{container}/{ifname}"),
                    HOLDER_ANNOTATION: me.to_string(),
                },
            },
            "spec": {"network": port.spec.network, "nodeName": self.node},
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        bounded(ports.patch(name, &params, &Patch::Apply(&body)))
            .await
            .map_err(|e| port_refused(namespace, name, e))?;
        Ok(Bound::Here)
    }

    /// Waits until the agent has plugged the Port `key` on this node, then
    /// moves its workload end into `netns` as the call's interface.
    async fn plug(
        &self,
        key: &Key,
        conf: &NetConf,
        request: &Request,
        netns: &Path,
        started: Instant,
    ) -> Result<Configuration, CniError> {
        let deadline = Instant::now() + self.patience;
        let mut plugged = self.plugged.clone();
        let mut waiting_for = "the controller's allocation".to_string();
        loop {
            let current: Option<Arc<super::Plugged>> = plugged.borrow_and_update().clone();
            if let Some(configuration) = current.as_ref().and_then(|p| p.ports.get(key)) {
                tracing::debug!(port = %key, ms = ms_since(started), "ADD: plugged by the agent");
                match self.move_in(key, configuration, conf, request, netns).await {
                    Ok(()) => {
                        tracing::debug!(port = %key, ms = ms_since(started), "ADD: moved in");
                        return Ok(configuration.clone());
                    }
                    // Made again by the agent's next apply (a DEL's namespace
                    // took it away).
                    Err(PlugError::Kernel(NetlinkError::NoLink { .. })) => {
                        waiting_for = "the agent to make the port's veth again".into();
                    }
                    Err(e) => {
                        return Err(agent_error(format!("attaching Port {key}"), e));
                    }
                }
            } else if let Some(stalled) = self.stalled(key) {
                return Err(CniError::new(
                    Code::InvalidConfiguration,
                    format!("Port {key} cannot be allocated"),
                    stalled,
                ));
            } else if self.stores.shared::<Port>(key).is_some_and(|p| ready(&p)) {
                if !waiting_for.starts_with("this node's agent") {
                    tracing::debug!(port = %key, ms = ms_since(started), "ADD: allocated");
                }
                waiting_for = "this node's agent to plug it".into();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CniError::new(
                    Code::TryAgainLater,
                    format!("Port {key} is not plugged yet"),
                    format!("waited {} s for {waiting_for}", self.patience.as_secs()),
                ));
            }
            // The agent publishes after every apply; the controller's
            // verdict arrives through the caches, looked at now and then.
            let _ = tokio::time::timeout(
                left.min(std::time::Duration::from_millis(250)),
                plugged.changed(),
            )
            .await;
        }
    }

    async fn move_in(
        &self,
        key: &Key,
        configuration: &Configuration,
        conf: &NetConf,
        request: &Request,
        netns: &Path,
    ) -> Result<(), PlugError> {
        let _links = self.held.links().await;
        let node = self.node_netns.as_deref();
        match workload::inspect(netns, &request.ifname).await? {
            Some(seen) if seen.mac != configuration.mac.0 => {
                return Err(taken(netns, &request.ifname, configuration));
            }
            // Made there by the agent's apply, or by an earlier ADD.
            Some(_) => {}
            // A veth waiting on the node (a Port not claimed yet when the
            // agent made it) moves in below; any other is remade straight
            // in the pod.
            None if workload::has_link(node, &configuration.peer).await? => {}
            None => {
                workload::remove_link(node, &configuration.interface).await?;
                let sandbox = Sandbox {
                    netns: netns.to_string_lossy().into_owned(),
                    interface: request.ifname.clone(),
                };
                workload::make(node, &configuration.link_into(key, &sandbox)).await?;
            }
        }
        let (addresses, routes) = match conf.pod_addresses {
            true => (
                configuration.addresses.iter().map(|(a, _)| *a).collect(),
                configuration.routes.clone(),
            ),
            false => (Vec::new(), Vec::new()),
        };
        workload::attach(
            self.node_netns.as_deref(),
            &configuration.peer,
            netns,
            &request.ifname,
            &addresses,
            &routes,
        )
        .await
    }

    /// The controller's verdict on `key`, if it says the Port needs the
    /// user to change something.
    fn stalled(&self, key: &Key) -> Option<String> {
        let port = self.stores.shared::<Port>(key)?;
        let generation = port.metadata.generation;
        let status = port.status.as_ref()?;
        (status.conditions.iter())
            .find(|c| c.type_ == "Stalled" && c.status == "True")
            .filter(|c| c.observed_generation == generation)
            .map(|c| c.message.clone())
    }

    pub(super) async fn del(&self, request: &Request) -> Result<(), CniError> {
        if let Some(why) = records::unsafe_names(&request.container_id, &request.ifname) {
            return Err(environment(why));
        }
        let known = self
            .records
            .load(&request.container_id, &request.ifname)
            .ok()
            .flatten();
        let netns = (request.netns.clone()).or_else(|| known.as_ref().map(|r| r.netns.clone()));
        // Without a record (an ADD that never got this far), the Port ADD
        // would have made.
        let key = match &known {
            Some(record) => Some(Key::new(&record.namespace, &record.port)),
            None => request
                .args
                .get("K8S_POD_NAMESPACE")
                .zip(request.args.get("K8S_POD_NAME"))
                .map(|(namespace, pod)| {
                    Key::new(namespace, attachment::port_name(pod, &request.ifname))
                }),
        };
        // Without a record, the interface is the Port's only if it has the
        // Port's MAC; with neither, it is left to whoever made it.
        let mac = match (&known, &key) {
            (Some(_), _) => None,
            (None, Some(key)) => Some(
                (self.stores.shared::<Port>(key))
                    .and_then(|p| p.status.as_ref()?.mac_address.clone())
                    .and_then(|m| m.parse::<Mac>().ok())
                    .map(|m| m.0.to_vec())
                    .unwrap_or_default(),
            ),
            (None, None) => Some(Vec::new()),
        };
        if let Some(netns) = netns {
            self.detach(
                key.as_ref(),
                Path::new(&netns),
                &request.ifname,
                mac.as_deref(),
            )
            .await
            .map_err(|e| agent_error("taking the interface out", e))?;
        }
        // Best effort: a hold that stays ends when its pod does.
        if let Some(record) = known.as_ref().filter(|r| !r.made_for_pod && !r.standby)
            && let Err(error) = migration::let_go(&self.client, record).await
        {
            tracing::warn!(port = %record.port_key(), %error, "letting go of a Port");
        }
        self.records
            .forget(&request.container_id, &request.ifname)
            .map_err(|e| agent_error("forgetting the attachment", e))
    }

    pub(super) async fn check(&self, request: &Request) -> Result<(), CniError> {
        let conf = parse_conf(&request.conf)?;
        if let Some(why) = records::unsafe_names(&request.container_id, &request.ifname) {
            return Err(environment(why));
        }
        let record = self
            .records
            .load(&request.container_id, &request.ifname)
            .map_err(|e| agent_error("reading the attachment", e))?
            .ok_or_else(|| {
                CniError::new(
                    Code::UnknownContainer,
                    format!(
                        "no attachment of {} for container {}",
                        request.ifname, request.container_id
                    ),
                    "",
                )
            })?;
        let key = Key::new(&record.namespace, &record.port);
        let configuration = match record.standby {
            true => {
                let port = (self.stores.shared::<Port>(&key))
                    .ok_or_else(|| agent_error(format!("Port {key} does not exist"), ""))?;
                migration::standby_configuration(&self.stores, &key, &port)?
            }
            false => {
                let current = self.plugged.borrow().clone();
                (current.as_ref().and_then(|p| p.ports.get(&key)).cloned()).ok_or_else(|| {
                    agent_error(format!("Port {key} is not plugged on this node"), "")
                })?
            }
        };
        let netns = request.netns.as_deref().unwrap_or(&record.netns);
        let seen = workload::inspect(Path::new(netns), &request.ifname)
            .await
            .map_err(|e| agent_error("reading the interface", e))?;
        // A workload that takes its addresses itself (a VM, by DHCP) may
        // hold any.
        let expected: Option<Vec<IpNet>> = (conf.pod_addresses && !record.standby)
            .then(|| configuration.addresses.iter().map(|(a, _)| *a).collect());
        let previous = previous_addresses(&conf);
        differences(
            &configuration,
            expected.as_deref(),
            seen.as_ref(),
            previous.as_deref(),
        )
        .map_err(|d| agent_error(format!("{} does not match Port {key}", request.ifname), d))
    }
}

/// What an existing Port is bound as for a pod that names it.
enum Bound {
    /// To this node, for the pod.
    Here,
    /// Held by a running pod on another node: the pod waits beside it.
    Standby(Box<Port>),
}

/// The error for an interface of the pod's name that is another port's.
fn taken(netns: &Path, ifname: &str, configuration: &Configuration) -> PlugError {
    PlugError::Namespace {
        namespace: netns.display().to_string(),
        cause: std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!(
                "{ifname} is there already, and is not this port's (MAC {})",
                configuration.mac
            ),
        ),
    }
}

fn port_refused(namespace: &str, name: &str, e: impl ToString) -> CniError {
    CniError::new(
        Code::Agent,
        format!("the API server refused Port {namespace}/{name}"),
        e.to_string(),
    )
}

/// Whether the controller says the Port is Ready.
fn ready(port: &Port) -> bool {
    (port.status.iter().flat_map(|s| &s.conditions))
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The Port a pod's annotation names for this attachment: by interface,
/// then by the configuration's name, then by the Network's.
pub(super) fn named_port(
    pod: &Pod,
    conf: &NetConf,
    ifname: &str,
) -> Result<Option<String>, CniError> {
    let Some(text) = pod.annotations().get(PORTS_ANNOTATION) else {
        return Ok(None);
    };
    let map: BTreeMap<String, String> = serde_json::from_str(text).map_err(|e| {
        CniError::new(
            Code::InvalidConfiguration,
            format!(
                "pod {}/{}: annotation {PORTS_ANNOTATION}",
                pod.namespace().unwrap_or_default(),
                pod.name_any()
            ),
            format!("a JSON object from interface or network name to Port name: {e}"),
        )
    })?;
    Ok([ifname, &conf.name, &conf.network]
        .iter()
        .find_map(|k| map.get(*k).cloned()))
}

/// The addresses an earlier ADD returned, as CHECK's prevResult has them.
fn previous_addresses(conf: &NetConf) -> Option<Vec<IpNet>> {
    let ips = conf.prev_result.as_ref()?.get("ips")?.as_array()?;
    Some(
        ips.iter()
            .filter_map(|ip| ip.get("address")?.as_str()?.parse().ok())
            .collect(),
    )
}

/// What differs between the interface and its port, if anything.
fn differences(
    configuration: &Configuration,
    expected: Option<&[IpNet]>,
    seen: Option<&workload::Seen>,
    previous: Option<&[IpNet]>,
) -> Result<(), String> {
    let Some(seen) = seen else {
        return Err("the interface is not in the namespace".into());
    };
    let mut wrong = Vec::new();
    if seen.mac != configuration.mac.0 {
        wrong.push(format!("MAC is not {}", configuration.mac));
    }
    if seen.mtu != configuration.mtu {
        wrong.push(format!("MTU is {}, not {}", seen.mtu, configuration.mtu));
    }
    if !seen.up {
        wrong.push("it is down".into());
    }
    let sorted = |list: &[IpNet]| {
        let mut list = list.to_vec();
        list.sort();
        list
    };
    let Some(expected) = expected else {
        return done(wrong);
    };
    if sorted(&seen.addresses) != sorted(expected) {
        wrong.push(format!(
            "addresses are {:?}, not {expected:?}",
            seen.addresses
        ));
    }
    if let Some(previous) = previous
        && sorted(previous) != sorted(expected)
    {
        wrong.push(format!(
            "prevResult lists {previous:?}, the Port has {expected:?}"
        ));
    }
    done(wrong)
}

fn done(wrong: Vec<String>) -> Result<(), String> {
    match wrong.is_empty() {
        true => Ok(()),
        false => Err(wrong.join("; ")),
    }
}

/// The ADD result.
fn result(configuration: &Configuration, conf: &NetConf, ifname: &str, netns: &str) -> Attached {
    let interface = Interface {
        name: ifname.to_string(),
        mac: configuration.mac.to_string(),
        mtu: configuration.mtu,
        sandbox: netns.to_string(),
    };
    if !conf.pod_addresses {
        return Attached {
            interface: Some(interface),
            ..Attached::default()
        };
    }
    Attached {
        interface: Some(interface),
        addresses: (configuration.addresses.iter())
            .map(|(address, gateway)| Address {
                address: *address,
                gateway: *gateway,
            })
            .collect(),
        routes: (configuration.routes.iter())
            .map(|r| Route {
                dst: r.destination,
                gw: Some(r.nexthop),
            })
            .collect(),
        nameservers: configuration.nameservers.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use neutrino_core::allocate::Mac;

    fn configuration() -> Configuration {
        Configuration {
            interface: "np-x".into(),
            bridge: "nb-x".into(),
            peer: "nsp-x".into(),
            mac: Mac([0xfa, 0x16, 0x3e, 0, 0, 5]),
            mtu: 1450,
            addresses: vec![(
                "10.0.0.5/24".parse().unwrap(),
                Some("10.0.0.1".parse().unwrap()),
            )],
            routes: Vec::new(),
            nameservers: vec!["10.0.0.2".parse().unwrap()],
        }
    }

    #[test]
    fn check_names_each_difference() {
        let expected: Vec<IpNet> = vec!["10.0.0.5/24".parse().unwrap()];
        let good = workload::Seen {
            mac: vec![0xfa, 0x16, 0x3e, 0, 0, 5],
            mtu: 1450,
            up: true,
            addresses: expected.clone(),
        };
        assert_eq!(
            differences(
                &configuration(),
                Some(&expected),
                Some(&good),
                Some(&expected)
            ),
            Ok(())
        );
        let bad = workload::Seen {
            mac: vec![0xfa, 0x16, 0x3e, 0, 0, 6],
            mtu: 1500,
            up: false,
            addresses: Vec::new(),
        };
        let wrong =
            differences(&configuration(), Some(&expected), Some(&bad), Some(&[])).unwrap_err();
        for part in [
            "MAC is not fa:16:3e:00:00:05",
            "MTU is 1500, not 1450",
            "down",
            "addresses are []",
            "prevResult lists []",
        ] {
            assert!(wrong.contains(part), "{part} missing from {wrong}");
        }
        assert_eq!(
            differences(&configuration(), Some(&expected), None, None).unwrap_err(),
            "the interface is not in the namespace"
        );
        // A VM's addresses are its own business.
        let leased = workload::Seen {
            addresses: vec!["10.0.0.9/24".parse().unwrap()],
            ..good
        };
        assert_eq!(
            differences(&configuration(), None, Some(&leased), None),
            Ok(())
        );
    }

    #[test]
    fn a_vm_attachment_reports_its_interface_and_no_address() {
        let conf = NetConf::parse(
            br#"{"cniVersion": "1.1.0", "name": "n", "type": "neutrino", "network": "web", "podAddresses": false}"#,
        )
        .unwrap();
        let attached = result(&configuration(), &conf, "net1", "/run/netns/x");
        assert_eq!(attached.interface.unwrap().mac, "fa:16:3e:00:00:05");
        assert!(attached.addresses.is_empty() && attached.nameservers.is_empty());
    }
}
