//! `neutrino lab`: the whole system on one machine. Every node is a network
//! namespace on a shared underlay with its own agent process, running the
//! same allocation and agent code as a cluster; every bound port gets a
//! workload namespace that takes its address by real DHCP.

pub mod agent;
pub mod cluster;
pub mod state;
mod underlay;
pub mod workload;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::core::object::HasStatus;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::core::resolve::Resolution;
use crate::core::{ClusterConfig, Key, NodeConfig, Snapshot, names, resolve, status};
use crate::dataplane::dnsmasq::Dnsmasq;
use crate::dataplane::netns;
use crate::manifest::{self, Manifests};
pub use cluster::ChartRelease;
use state::{Files, LabState, Workload, write_atomic};

/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/run/neutrino-lab";

/// How long agents get to realise a generation.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a cluster lab waits for its objects to become Ready (the
/// controller and the agents start, elect, list and watch first).
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(120);

/// The namespace of the controller's Lease in a cluster lab, as the chart's.
pub const LEASE_NAMESPACE: &str = "neutrino-system";

/// Why a lab command failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("neutrino lab needs {0}")]
    Missing(String),
    #[error("{what}: {cause}")]
    Io { what: String, cause: std::io::Error },
    #[error(transparent)]
    Netlink(#[from] crate::dataplane::netlink::NetlinkError),
    #[error("the manifests cannot be read:\n  {}", .0.join("\n  "))]
    Manifests(Vec<String>),
    #[error("{} object(s) would not become Ready; nothing was changed:\n  {}", .0.len(), .0.join("\n  "))]
    Invalid(Vec<String>),
    #[error("no lab in {0}; start one with `neutrino lab up -f PATH`")]
    NoLab(PathBuf),
    #[error(
        "a lab already runs in {0}; `neutrino lab apply` changes it, `neutrino lab down` removes it"
    )]
    AlreadyUp(PathBuf),
    #[error("{0}")]
    Setup(String),
    #[error("{0}")]
    Api(String),
}

impl LabError {
    pub fn io(what: String, cause: std::io::Error) -> Self {
        Self::Io { what, cause }
    }
}

/// Checks that this machine can run a lab, naming what to install.
pub fn preflight() -> Result<(), LabError> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err(LabError::Missing(
            "root, to create network namespaces: run it with sudo".into(),
        ));
    }
    let missing: Vec<&str> = [
        ("dnsmasq", "dnsmasq-base"),
        ("udhcpc", "udhcpc"),
        ("ip", "iproute2"),
        ("iptables-restore", "iptables"),
        ("ipset", "ipset"),
    ]
    .into_iter()
    .filter(|(binary, _)| !on_path(binary))
    .map(|(_, package)| package)
    .collect();
    if !missing.is_empty() {
        return Err(LabError::Missing(format!(
            "{}: apt-get install {}",
            missing.join(", "),
            missing.join(" ")
        )));
    }
    Ok(())
}

fn on_path(binary: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(binary).is_file()))
}

/// A lab, by its state directory.
pub struct Lab {
    files: Files,
    /// The binary agents run as (`neutrino lab agent`).
    binary: PathBuf,
}

/// A port's workload as the lab names it.
fn workload_namespace(prefix: &str, port: &Key) -> String {
    format!("{prefix}{}.{}", port.namespace, port.name)
}

fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Lab {
    pub fn new(dir: impl Into<PathBuf>, binary: impl Into<PathBuf>) -> Self {
        Self {
            files: Files::new(dir),
            binary: binary.into(),
        }
    }

    pub fn files(&self) -> &Files {
        &self.files
    }

    fn prefix(state: &LabState) -> String {
        if state.name.is_empty() {
            String::new()
        } else {
            format!("{}-", state.name)
        }
    }

    /// The namespace of `node` in a lab whose namespaces start with `prefix`.
    pub fn node_namespace(prefix: &str, node: &str) -> String {
        format!("{prefix}{node}")
    }

    /// The namespace of a port's workload.
    pub fn workload_namespace(&self, port: &Key) -> Result<String, LabError> {
        let state = self.state()?;
        state
            .workloads
            .get(&port.to_string())
            .map(|w| w.namespace.clone())
            .ok_or_else(|| LabError::Setup(format!("port {port} has no workload: it is not bound to a node, not Ready, or not in the lab")))
    }

    fn state(&self) -> Result<LabState, LabError> {
        if !self.files.exists() {
            return Err(LabError::NoLab(self.files.dir.clone()));
        }
        self.files
            .read_state()
            .map_err(|e| LabError::io(format!("reading {}", self.files.lab().display()), e))
    }

    /// Brings a lab up: underlay, nodes, agents, then the manifests.
    pub async fn up(&self, path: &Path, nodes: usize, name: &str) -> Result<Summary, LabError> {
        self.bring_up(path, nodes, name, None, None).await
    }

    /// Brings a lab up with the cluster of `kubeconfig` in the middle: the
    /// manifests go to its API server, `neutrino controller` allocates and
    /// writes status there, and every node runs `neutrino agent` — with the
    /// kubeconfig's own credentials, or with the service accounts of a
    /// release of the chart.
    pub async fn up_on_cluster(
        &self,
        path: &Path,
        nodes: usize,
        name: &str,
        kubeconfig: &Path,
        release: Option<&ChartRelease>,
    ) -> Result<Summary, LabError> {
        self.bring_up(path, nodes, name, Some(kubeconfig), release)
            .await
    }

    async fn bring_up(
        &self,
        path: &Path,
        nodes: usize,
        name: &str,
        kubeconfig: Option<&Path>,
        release: Option<&ChartRelease>,
    ) -> Result<Summary, LabError> {
        preflight()?;
        if self.files.exists() {
            return Err(LabError::AlreadyUp(self.files.dir.clone()));
        }
        let manifests = read(path)?;
        let config = ClusterConfig::with_nodes(nodes);
        // Refuse bad manifests before anything is built.
        resolve_or_refuse(&manifests.snapshot, &config)?;
        let io = |what: &str| {
            let what = what.to_string();
            move |e| LabError::io(what, e)
        };
        std::fs::create_dir_all(&self.files.dir).map_err(io("creating the state directory"))?;
        let kubeconfig = kubeconfig
            .map(std::path::absolute)
            .transpose()
            .map_err(io("finding the kubeconfig"))?;
        // Reach the API server before anything is built.
        let client = match &kubeconfig {
            Some(file) => Some(cluster::connect(file).await?),
            None => None,
        };
        let mut state = LabState {
            name: name.to_string(),
            kubeconfig: kubeconfig.clone(),
            chart_release: release.map(ToString::to_string),
            ..LabState::default()
        };
        let prefix = Self::prefix(&state);
        let taken: Vec<String> = netns::list()
            .map_err(io("listing namespaces"))?
            .into_iter()
            .filter(|n| {
                config
                    .nodes
                    .iter()
                    .any(|node| *n == Self::node_namespace(&prefix, &node.name))
                    || *n == format!("{prefix}underlay")
            })
            .collect();
        if !taken.is_empty() {
            return Err(LabError::Setup(format!(
                "namespaces {} exist already; pick another lab name with --name",
                taken.join(", ")
            )));
        }
        write_atomic(
            &self.files.cluster(),
            serde_saphyr::to_string(&config)
                .map_err(|e| LabError::Setup(e.to_string()))?
                .as_bytes(),
        )
        .map_err(io("writing the cluster file"))?;
        self.files
            .write_state(&state)
            .map_err(io("writing the lab state"))?;

        let underlay = format!("{prefix}underlay");
        state.namespaces.push(underlay.clone());
        self.files
            .write_state(&state)
            .map_err(io("writing the lab state"))?;
        underlay::build_underlay(&underlay, &config).await?;
        for (i, node) in config.nodes.iter().enumerate() {
            let namespace = Self::node_namespace(&prefix, &node.name);
            state.namespaces.push(namespace.clone());
            self.files
                .write_state(&state)
                .map_err(io("writing the lab state"))?;
            underlay::build_node(&underlay, &namespace, i + 1, node, &config).await?;
        }
        let Some(client) = client else {
            self.publish(&manifests.snapshot, &config, &mut state)?;
            for node in &config.nodes {
                self.start_agent(&node.name)?;
            }
            return self.converge(&mut state, &config).await;
        };
        cluster::install_crds(&client).await?;
        cluster::register_nodes(&client, &config).await?;
        if let (Some(release), Some(admin)) = (release, &kubeconfig) {
            self.write_service_account_kubeconfigs(&client, admin, release, &config)
                .await?;
        }
        self.start_controller(&state)?;
        for node in &config.nodes {
            self.start_agent(&node.name)?;
        }
        self.publish_to_cluster(&client, &manifests.snapshot, &mut state)
            .await?;
        self.converge_on_cluster(&client, &mut state, &config).await
    }

    /// Applies the objects to the cluster, deletes those the lab applied
    /// before and no longer holds, and records what it applied.
    async fn publish_to_cluster(
        &self,
        client: &kube::Client,
        snapshot: &Snapshot,
        state: &mut LabState,
    ) -> Result<(), LabError> {
        let created =
            cluster::ensure_namespaces(client, snapshot, &Self::lease_namespace(state)).await?;
        state.created_namespaces.extend(created);
        let previous = applied(state);
        state.applied = cluster::ids(snapshot)
            .into_iter()
            .map(|(kind, key)| (kind, key.namespace, key.name))
            .collect();
        state.generation += 1;
        self.files
            .write_state(state)
            .map_err(|e| LabError::io("writing the lab state".into(), e))?;
        cluster::apply(client, snapshot, &previous).await
    }

    /// Waits until the cluster has every object Ready and realised on its
    /// nodes, then brings the outside host and the workloads in line.
    async fn converge_on_cluster(
        &self,
        client: &kube::Client,
        state: &mut LabState,
        config: &ClusterConfig,
    ) -> Result<Summary, LabError> {
        let snapshot = cluster::wait_ready(client, &applied(state), CLUSTER_TIMEOUT)
            .await
            .map_err(|e| {
                LabError::Setup(format!(
                    "{e}\nsee {} and the agents' logs under {}",
                    self.files.controller_log().display(),
                    self.files.dir.join("nodes").display()
                ))
            })?;
        self.sync_outside(state, config, &snapshot).await?;
        self.sync_workloads(state, config, &snapshot).await?;
        Ok(Summary {
            generation: state.generation,
            workloads: state.workloads.clone(),
        })
    }

    /// Kubeconfigs with the chart's service-account tokens: the
    /// controller's, and each agent's bound to its node.
    async fn write_service_account_kubeconfigs(
        &self,
        client: &kube::Client,
        admin: &Path,
        release: &ChartRelease,
        config: &ClusterConfig,
    ) -> Result<(), LabError> {
        let token = cluster::service_account_token(client, release, "controller", None).await?;
        self.write_secret(
            &self.files.controller_kubeconfig(),
            &cluster::token_kubeconfig(admin, &token)?,
        )?;
        for node in &config.nodes {
            let token =
                cluster::service_account_token(client, release, "agent", Some(&node.name)).await?;
            std::fs::create_dir_all(self.files.node_dir(&node.name))
                .map_err(|e| LabError::io("creating the node's directory".into(), e))?;
            self.write_secret(
                &self.files.agent_kubeconfig(&node.name),
                &cluster::token_kubeconfig(admin, &token)?,
            )?;
        }
        Ok(())
    }

    fn write_secret(&self, path: &Path, text: &str) -> Result<(), LabError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let what = || format!("writing {}", path.display());
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| LabError::io(what(), e))
    }

    /// The kubeconfig a cluster lab's component runs with.
    fn component_kubeconfig(&self, state: &LabState, agent_of: Option<&str>) -> Option<PathBuf> {
        let admin = state.kubeconfig.clone()?;
        if state.chart_release.is_none() {
            return Some(admin);
        }
        Some(match agent_of {
            Some(node) => self.files.agent_kubeconfig(node),
            None => self.files.controller_kubeconfig(),
        })
    }

    /// The namespace of the controller's Lease: the release's, as the chart's.
    fn lease_namespace(state: &LabState) -> String {
        state
            .chart_release
            .as_ref()
            .and_then(|r| r.parse::<ChartRelease>().ok())
            .map_or(LEASE_NAMESPACE.to_string(), |r| r.namespace)
    }

    /// The cluster of a cluster lab.
    async fn client(&self, state: &LabState) -> Result<Option<kube::Client>, LabError> {
        match &state.kubeconfig {
            Some(file) => Ok(Some(cluster::connect(file).await?)),
            None => Ok(None),
        }
    }

    /// Replaces the lab's objects with those under `path`: added, changed
    /// and removed objects all take effect; allocations of objects that stay
    /// are kept.
    pub async fn apply(&self, path: &Path) -> Result<Summary, LabError> {
        preflight()?;
        let mut state = self.state()?;
        let config = self
            .files
            .read_cluster()
            .map_err(|e| LabError::io("reading the cluster file".into(), e))?;
        let mut manifests = read(path)?;
        if let Some(client) = self.client(&state).await? {
            // Refuse what would not become Ready, judged with the
            // allocations the cluster holds, before anything is applied.
            let previous = cluster::read(&client).await?;
            let mut judged = manifests.snapshot.clone();
            carry_status(&previous, &mut judged);
            resolve_or_refuse(&judged, &config)?;
            self.publish_to_cluster(&client, &manifests.snapshot, &mut state)
                .await?;
            return self.converge_on_cluster(&client, &mut state, &config).await;
        }
        let previous = self.snapshot()?;
        carry_status(&previous, &mut manifests.snapshot);
        self.publish(&manifests.snapshot, &config, &mut state)?;
        self.converge(&mut state, &config).await
    }

    /// The objects the lab holds, statuses included: read from the cluster
    /// on a cluster lab, else from the lab's files.
    pub async fn objects(&self) -> Result<Snapshot, LabError> {
        match self.client(&self.state()?).await? {
            Some(client) => cluster::read(&client).await,
            None => self.snapshot(),
        }
    }

    /// The objects a lab without a cluster holds, statuses included.
    pub fn snapshot(&self) -> Result<Snapshot, LabError> {
        let file = self.files.objects();
        if !file.exists() {
            return Ok(Snapshot::default());
        }
        manifest::load(&file)
            .map(|m| m.snapshot)
            .map_err(|errors| LabError::Manifests(errors.iter().map(ToString::to_string).collect()))
    }

    /// Validates and allocates, records the result as the objects' status,
    /// and hands a new generation to the agents. Nothing changes when any
    /// object would not become Ready.
    fn publish(
        &self,
        snapshot: &Snapshot,
        config: &ClusterConfig,
        state: &mut LabState,
    ) -> Result<(), LabError> {
        let resolution = resolve_or_refuse(snapshot, config)?;
        let mut snapshot = snapshot.clone();
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        status::apply(&mut snapshot, &resolution, &now);
        let text = manifest::dump(&snapshot).map_err(|e| LabError::Setup(e.to_string()))?;
        write_atomic(&self.files.objects(), text.as_bytes())
            .map_err(|e| LabError::io("writing the objects".into(), e))?;
        state.generation += 1;
        self.files
            .write_state(state)
            .map_err(|e| LabError::io("writing the lab state".into(), e))?;
        write_atomic(
            &self.files.generation(),
            state.generation.to_string().as_bytes(),
        )
        .map_err(|e| LabError::io("writing the generation".into(), e))
    }

    /// Starts `node`'s agent: a `neutrino lab agent` that reads the lab's
    /// files, or on a cluster lab a `neutrino agent` as a DaemonSet runs it.
    fn start_agent(&self, node: &str) -> Result<(), LabError> {
        let dir = self.files.node_dir(node);
        std::fs::create_dir_all(&dir)
            .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
        let state = self.state()?;
        let args: Vec<OsString> = match &state.kubeconfig {
            None => vec![
                "lab".into(),
                "agent".into(),
                "--node".into(),
                node.into(),
                "--state".into(),
                self.files.dir.clone().into(),
            ],
            Some(_) => {
                let config = self
                    .files
                    .read_cluster()
                    .map_err(|e| LabError::io("reading the cluster file".into(), e))?;
                let me = config.node(node).ok_or_else(|| {
                    LabError::Setup(format!("node {node} is not in the cluster file"))
                })?;
                self.cluster_agent_args(&state, me)
            }
        };
        self.spawn(
            &format!("the agent of {node}"),
            &args,
            self.component_kubeconfig(&state, Some(node)).as_deref(),
            &self.files.agent_log(node),
            &self.files.agent_pid(node),
        )
    }

    fn cluster_agent_args(&self, state: &LabState, node: &NodeConfig) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "agent".into(),
            "--node".into(),
            node.name.clone().into(),
            "--tunnel-ip".into(),
            node.tunnel_ip.to_string().into(),
            "--netns".into(),
            Self::node_namespace(&Self::prefix(state), &node.name).into(),
            "--state".into(),
            self.files.node_dir(&node.name).into(),
            "--cluster".into(),
            self.files.cluster().into(),
            "--resync-seconds".into(),
            "5".into(),
        ];
        for (physnet, interface) in &node.physical_interfaces {
            args.push(format!("--physical-interface={physnet}={interface}").into());
        }
        if node.gateway {
            args.push("--gateway".into());
        }
        args
    }

    /// Starts a cluster lab's controller, as the chart's Deployment runs it.
    fn start_controller(&self, state: &LabState) -> Result<(), LabError> {
        let args: Vec<OsString> = vec![
            "controller".into(),
            "--cluster".into(),
            self.files.cluster().into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--lease-namespace".into(),
            Self::lease_namespace(state).into(),
            "--identity".into(),
            format!("lab-{}", std::process::id()).into(),
            "--resync-seconds".into(),
            "10".into(),
        ];
        self.spawn(
            "the controller",
            &args,
            self.component_kubeconfig(state, None).as_deref(),
            &self.files.controller_log(),
            &self.files.controller_pid(),
        )
    }

    /// Stops a cluster lab's controller (for tests: a failover, a replica
    /// of their own); returns whether one ran.
    pub fn stop_controller(&self) -> bool {
        self.controller_pid().map(stop).is_some()
    }

    /// Starts a cluster lab's controller again, unless it runs.
    pub fn restart_controller(&self) -> Result<(), LabError> {
        if self.controller_pid().is_some() {
            return Ok(());
        }
        self.start_controller(&self.state()?)
    }

    /// The pid of a cluster lab's controller, if it runs.
    pub fn controller_pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.files.controller_pid())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        let ours =
            cmdline.contains("controller") && cmdline.contains(&*self.files.dir.to_string_lossy());
        ours.then_some(pid)
    }

    /// Runs the neutrino binary with `args` in a session of its own, logging
    /// to `log` and recording its pid in `pid_file`.
    fn spawn(
        &self,
        what: &str,
        args: &[OsString],
        kubeconfig: Option<&Path>,
        log: &Path,
        pid_file: &Path,
    ) -> Result<(), LabError> {
        // Appended to: a restarted component's log keeps what came before.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| LabError::io(format!("opening the log of {what}"), e))?;
        let mut command = std::process::Command::new(&self.binary);
        command.args(args);
        if let Some(file) = kubeconfig {
            command
                .env("KUBECONFIG", file)
                .env("NEUTRINO_LOG", "info,kube=warn");
        }
        command
            .stdin(std::process::Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(|e| LabError::io(format!("opening the log of {what}"), e))?,
            )
            .stderr(log);
        // Its own session: the agent outlives the command that started it.
        use std::os::unix::process::CommandExt;
        unsafe {
            command.pre_exec(|| {
                nix::unistd::setsid()
                    .map(|_| ())
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = command
            .spawn()
            .map_err(|e| LabError::io(format!("starting {what}"), e))?;
        write_atomic(pid_file, child.id().to_string().as_bytes())
            .map_err(|e| LabError::io(format!("recording the pid of {what}"), e))?;
        // While this process lives the agent is its child: reap it when it
        // ends, so that a dead agent is seen as dead.
        std::thread::spawn(move || child.wait());
        Ok(())
    }

    /// The pid of `node`'s agent, if it runs.
    pub fn agent_pid(&self, node: &str) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.files.agent_pid(node))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        // The pid must still be this lab's agent of this node (a zombie has
        // no command line left).
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        let ours = cmdline.contains(node) && cmdline.contains(&*self.files.dir.to_string_lossy());
        ours.then_some(pid)
    }

    /// Kills `node`'s agent with SIGKILL, as a crash would (for tests).
    pub fn kill_agent(&self, node: &str) -> Option<i32> {
        let pid = self.agent_pid(node)?;
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        Some(pid)
    }

    /// Starts `node`'s agent again after it died.
    pub fn restart_agent(&self, node: &str) -> Result<(), LabError> {
        if self.agent_pid(node).is_some() {
            return Ok(());
        }
        self.start_agent(node)
    }

    /// Waits until every agent realised the current generation, then
    /// brings the workloads in line with the ready ports.
    async fn converge(
        &self,
        state: &mut LabState,
        config: &ClusterConfig,
    ) -> Result<Summary, LabError> {
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let statuses: BTreeMap<String, Option<state::AgentStatus>> = config
                .nodes
                .iter()
                .map(|n| (n.name.clone(), self.files.read_agent_status(&n.name)))
                .collect();
            let done = statuses
                .values()
                .all(|s| s.as_ref().is_some_and(|s| s.generation >= state.generation));
            if done {
                let errors: Vec<String> = statuses
                    .iter()
                    .flat_map(|(node, s)| {
                        s.iter()
                            .flat_map(move |s| s.errors.iter().map(move |e| format!("{node}: {e}")))
                    })
                    .collect();
                if !errors.is_empty() {
                    return Err(LabError::Setup(format!(
                        "agents reported errors:\n  {}",
                        errors.join("\n  ")
                    )));
                }
                break;
            }
            if Instant::now() > deadline {
                let late: Vec<&String> = statuses
                    .iter()
                    .filter(|(_, s)| s.as_ref().is_none_or(|s| s.generation < state.generation))
                    .map(|(n, _)| n)
                    .collect();
                return Err(LabError::Setup(format!(
                    "agents of {late:?} did not realise generation {} in time; see {}",
                    state.generation,
                    self.files.dir.join("nodes").display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let snapshot = self.snapshot()?;
        self.sync_outside(state, config, &snapshot).await?;
        self.sync_workloads(state, config, &snapshot).await?;
        Ok(Summary {
            generation: state.generation,
            workloads: state.workloads.clone(),
        })
    }

    /// The namespace of the host that stands outside, on the external networks.
    pub fn outside_namespace(&self) -> Result<String, LabError> {
        Ok(format!("{}outside", Self::prefix(&self.state()?)))
    }

    /// Puts the outside host on every flat external network, holding its
    /// subnets' gateway addresses.
    async fn sync_outside(
        &self,
        state: &mut LabState,
        config: &ClusterConfig,
        snapshot: &Snapshot,
    ) -> Result<(), LabError> {
        let prefix = Self::prefix(state);
        let resolution = resolve(snapshot, config);
        let physnets: Vec<&String> = config.physical_networks.keys().collect();
        let mut wanted: BTreeMap<usize, Vec<ipnet::IpNet>> = BTreeMap::new();
        for (key, network) in resolution.ready_networks() {
            if !network.external || network.network_type != crate::api::NetworkType::Flat {
                continue;
            }
            let Some(index) = network
                .physical_network
                .as_ref()
                .and_then(|p| physnets.iter().position(|n| *n == p))
            else {
                continue;
            };
            for (_, subnet) in resolution
                .ready_subnets()
                .filter(|(_, s)| &s.network == key)
            {
                if let Some(gateway) = subnet.gateway {
                    let address = ipnet::IpNet::new(gateway, subnet.cidr.prefix_len())
                        .expect("prefix of a parsed CIDR");
                    wanted.entry(index).or_default().push(address);
                }
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let namespace = format!("{prefix}outside");
        if !state.namespaces.contains(&namespace) {
            state.namespaces.push(namespace.clone());
            self.files
                .write_state(state)
                .map_err(|e| LabError::io("writing the lab state".into(), e))?;
        }
        for (index, addresses) in wanted {
            underlay::build_outside(
                &format!("{prefix}underlay"),
                &namespace,
                index,
                &addresses,
                config.underlay_mtu,
            )
            .await?;
        }
        Ok(())
    }

    /// Creates a workload for every ready bound port, removes those of ports
    /// that are gone or moved, and renews leases whose address changed.
    async fn sync_workloads(
        &self,
        state: &mut LabState,
        config: &ClusterConfig,
        snapshot: &Snapshot,
    ) -> Result<(), LabError> {
        let prefix = Self::prefix(state);
        let resolution = resolve(snapshot, config);
        let mut wanted: BTreeMap<String, (Key, String, String, Vec<String>)> = BTreeMap::new();
        for (key, port) in resolution.ready_ports() {
            if let Some(node) = &port.node {
                let ips = port
                    .fixed_ips
                    .iter()
                    .filter(|(_, ip)| ip.is_ipv4())
                    .map(|(_, ip)| ip.to_string())
                    .collect();
                wanted.insert(
                    key.to_string(),
                    (key.clone(), node.clone(), port.mac.to_string(), ips),
                );
            }
        }
        let stale: Vec<String> = state
            .workloads
            .iter()
            .filter(|(k, w)| {
                wanted
                    .get(*k)
                    .is_none_or(|(_, node, mac, _)| *node != w.node || *mac != w.mac)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            if let Some(workload) = state.workloads.remove(&key) {
                netns::delete(&workload.namespace).map_err(|e| {
                    LabError::io(format!("removing namespace {}", workload.namespace), e)
                })?;
                let _ = std::fs::remove_dir_all(self.files.workload_dir(&workload.namespace));
            }
        }
        self.files
            .write_state(state)
            .map_err(|e| LabError::io("writing the lab state".into(), e))?;

        for (id, (key, node, mac, ips)) in wanted {
            let namespace = workload_namespace(&prefix, &key);
            let existing = state.workloads.get(&id).cloned();
            let plugged = workload::is_plugged(&namespace).await;
            let lease_ok = existing
                .as_ref()
                .and_then(|w| w.lease.as_ref())
                .is_some_and(|l| ips.is_empty() || ips.contains(&l.ip));
            if plugged && lease_ok {
                continue;
            }
            if !plugged {
                let node_namespace = Self::node_namespace(&prefix, &node);
                workload::plug(&node_namespace, &names::port_peer(&key), &namespace).await?;
            }
            state.workloads.insert(
                id.clone(),
                Workload {
                    namespace: namespace.clone(),
                    node: node.clone(),
                    mac: mac.clone(),
                    lease: None,
                },
            );
            self.files
                .write_state(state)
                .map_err(|e| LabError::io("writing the lab state".into(), e))?;
            if ips.is_empty() {
                continue;
            }
            let lease = workload::dhcp(&namespace, &self.files.workload_dir(&namespace))?;
            if let Some(w) = state.workloads.get_mut(&id) {
                w.lease = Some(lease);
            }
            self.files
                .write_state(state)
                .map_err(|e| LabError::io("writing the lab state".into(), e))?;
        }
        Ok(())
    }

    /// The lab's objects, their allocations and readiness, the agents, and
    /// the workloads' leases.
    pub async fn status(&self) -> Result<String, LabError> {
        let state = self.state()?;
        let config = self
            .files
            .read_cluster()
            .map_err(|e| LabError::io("reading the cluster file".into(), e))?;
        if let Some(client) = self.client(&state).await? {
            let snapshot = cluster::read(&client).await?;
            let agents = cluster::agents(&client).await?;
            return Ok(agent::render_cluster_status(
                &state,
                &config,
                &snapshot,
                &agents,
                self.controller_pid(),
                |n| self.agent_pid(n),
            ));
        }
        let snapshot = self.snapshot()?;
        Ok(agent::render_status(
            &state,
            &config,
            &snapshot,
            &self.files,
            |n| self.agent_pid(n),
        ))
    }

    /// Runs `command` in a port's workload and returns its exit code.
    pub fn exec(&self, port: &Key, command: &[String]) -> Result<i32, LabError> {
        let namespace = self.workload_namespace(port)?;
        self.exec_in(&namespace, command)
    }

    /// Runs `command` in one of the lab's namespaces and returns its exit code.
    pub fn exec_in(&self, namespace: &str, command: &[String]) -> Result<i32, LabError> {
        let (program, args) = command.split_first().ok_or_else(|| {
            LabError::Setup("no command given: lab exec NAMESPACE/PORT -- COMMAND".into())
        })?;
        let status = netns::command(namespace, program)
            .map_err(|e| LabError::io(format!("entering {namespace}"), e))?
            .args(args)
            .status()
            .map_err(|e| LabError::io(format!("running {program}"), e))?;
        Ok(status.code().unwrap_or(1))
    }

    /// Removes everything the lab made: agents, DHCP servers, namespaces and
    /// the state directory. Goes on past failures and reports them all.
    pub fn down(&self) -> Result<Vec<String>, LabError> {
        let state = self.state()?;
        let prefix = Self::prefix(&state);
        let config = self.files.read_cluster().unwrap_or_default();
        let mut removed = Vec::new();
        let mut errors = Vec::new();
        // On a cluster, the objects go first, while the controller and the
        // agents still run to release their finalizers and their kernel
        // state; then the components, the nodes' records and the namespaces
        // the lab created.
        if state.kubeconfig.is_some() {
            let objects = applied(&state);
            // The tenants' namespaces the lab made go now too, with whatever
            // else was put in them, while the controller still leads; the
            // Lease's namespace goes last.
            let tenants: Vec<String> = state
                .created_namespaces
                .iter()
                .filter(|n| **n != Self::lease_namespace(&state))
                .cloned()
                .collect();
            let outcome = on_fresh_runtime(async {
                let client = self.client(&state).await?.expect("a cluster lab");
                let mut errors = cluster::delete(&client, &objects).await;
                errors.extend(cluster::delete_namespaces(&client, &tenants).await);
                if let Err(e) = cluster::wait_gone(&client, &objects, CLUSTER_TIMEOUT).await {
                    errors.push(e.to_string());
                }
                Ok::<_, LabError>(errors)
            });
            match outcome {
                Ok(failed) if failed.is_empty() => {
                    removed.push(format!("{} objects on the cluster", objects.len()));
                }
                Ok(failed) => errors.extend(failed),
                Err(e) => errors.push(e.to_string()),
            }
        }
        if let Some(pid) = self.controller_pid() {
            stop(pid);
            removed.push("the controller".into());
        }
        for node in &config.nodes {
            if let Some(pid) = self.agent_pid(&node.name) {
                stop(pid);
                removed.push(format!("agent of {}", node.name));
            }
            let (report, dhcp_errors) =
                Dnsmasq::new(self.files.node_dir(&node.name).join("dhcp")).sync(&[]);
            removed.extend(
                report
                    .stopped
                    .into_iter()
                    .map(|n| format!("dnsmasq in {n}")),
            );
            errors.extend(dhcp_errors.into_iter().map(|e| e.to_string()));
        }
        if state.kubeconfig.is_some() {
            let outcome = on_fresh_runtime(async {
                let client = self.client(&state).await?.expect("a cluster lab");
                let mut errors = cluster::unregister_nodes(&client, &config).await;
                if let Some(release) = state.chart_release.as_ref().and_then(|r| r.parse().ok()) {
                    errors.extend(cluster::delete_agent_pods(&client, &release, &config).await);
                }
                let lease: Vec<String> = state
                    .created_namespaces
                    .iter()
                    .filter(|n| **n == Self::lease_namespace(&state))
                    .cloned()
                    .collect();
                errors.extend(cluster::delete_namespaces(&client, &lease).await);
                Ok::<_, LabError>(errors)
            });
            match outcome {
                Ok(failed) => errors.extend(failed),
                Err(e) => errors.push(e.to_string()),
            }
        }
        let ours = |name: &str| {
            state.namespaces.iter().any(|n| n == name)
                || state.workloads.values().any(|w| w.namespace == name)
                || config.nodes.iter().any(|node| {
                    name.starts_with(&format!("{}-", Self::node_namespace(&prefix, &node.name)))
                })
        };
        match netns::list() {
            Ok(all) => {
                for name in all.into_iter().filter(|n| ours(n)) {
                    match netns::delete(&name) {
                        Ok(()) => removed.push(format!("namespace {name}")),
                        Err(e) => errors.push(format!("removing namespace {name}: {e}")),
                    }
                }
            }
            Err(e) => errors.push(format!("listing namespaces: {e}")),
        }
        if errors.is_empty() {
            std::fs::remove_dir_all(&self.files.dir)
                .map_err(|e| LabError::io(format!("removing {}", self.files.dir.display()), e))?;
            Ok(removed)
        } else {
            Err(LabError::Setup(format!(
                "lab down left things behind:\n  {}",
                errors.join("\n  ")
            )))
        }
    }
}

/// What an up or apply brought about.
#[derive(Debug)]
pub struct Summary {
    pub generation: u64,
    pub workloads: BTreeMap<String, Workload>,
}

/// The resolution of `snapshot`, or a refusal naming every object that
/// would not become Ready: the lab changes nothing for those.
fn resolve_or_refuse(snapshot: &Snapshot, config: &ClusterConfig) -> Result<Resolution, LabError> {
    let resolution = resolve(snapshot, config);
    let problems: Vec<String> = resolution
        .problems()
        .iter()
        .map(|p| format!("{p} [{}]", p.reason.as_str()))
        .collect();
    if problems.is_empty() {
        Ok(resolution)
    } else {
        Err(LabError::Invalid(problems))
    }
}

fn read(path: &Path) -> Result<Manifests, LabError> {
    manifest::load(path)
        .map_err(|errors| LabError::Manifests(errors.iter().map(ToString::to_string).collect()))
}

/// Keeps the recorded status of objects that are still there, so their
/// allocations stay put across applies.
fn carry_status(previous: &Snapshot, next: &mut Snapshot) {
    fn carry<T: HasStatus>(from: &BTreeMap<Key, T>, to: &mut BTreeMap<Key, T>)
    where
        T::Status: Clone,
    {
        for (key, object) in to.iter_mut() {
            if let Some(old) = from.get(key) {
                *object.status_mut() = old.status().cloned();
            }
        }
    }
    carry(&previous.networks, &mut next.networks);
    carry(&previous.subnets, &mut next.subnets);
    carry(&previous.ports, &mut next.ports);
    carry(&previous.routers, &mut next.routers);
    carry(&previous.floating_ips, &mut next.floating_ips);
    carry(&previous.security_groups, &mut next.security_groups);
}

/// Runs `future` to completion on a runtime of its own, in a thread of its
/// own, so that `down` works from synchronous code and from inside another
/// runtime (a test's guard dropped in an async test) alike.
fn on_fresh_runtime<T: Send>(future: impl std::future::Future<Output = T> + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for lab down")
                    .block_on(future)
            })
            .join()
            .expect("lab down's runtime thread")
    })
}

/// Stops a process: SIGTERM, two seconds' grace, then SIGKILL.
fn stop(pid: i32) {
    let pid = Pid::from_raw(pid);
    let _ = kill(pid, Signal::SIGTERM);
    for _ in 0..200 {
        if kill(pid, None).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = kill(pid, Signal::SIGKILL);
}

/// What a cluster lab applied, as (kind, key).
fn applied(state: &LabState) -> Vec<(String, Key)> {
    state
        .applied
        .iter()
        .map(|(kind, namespace, name)| (kind.clone(), Key::new(namespace, name)))
        .collect()
}

/// Seconds since the epoch, for agent reports.
pub fn timestamp() -> u64 {
    now_seconds()
}
