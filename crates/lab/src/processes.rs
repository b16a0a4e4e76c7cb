//! The lab's processes: each node's agent under its supervisor, and a
//! cluster lab's controller, started in sessions of their own and found
//! again by pid.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::state::{LabState, write_atomic};
use super::supervisor::read_restarts;
use super::underlay::TUNNEL_INTERFACE;
use super::{Lab, LabError};
use neutrino_core::{ClusterConfig, NodeConfig};

impl Lab {
    /// Starts `node`'s agent: a `neutrino lab agent` that reads the lab's
    /// files, or on a cluster lab a `neutrino agent` as a DaemonSet runs it.
    pub(super) fn start_agent(&self, node: &str) -> Result<(), LabError> {
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
        // The agent runs under a supervisor that starts it again when it
        // ends, as a DaemonSet's pod would be.
        let mut supervised: Vec<OsString> = vec![
            "lab".into(),
            "supervise".into(),
            "--node".into(),
            node.into(),
            "--state".into(),
            self.files.dir.clone().into(),
            "--".into(),
        ];
        supervised.extend(args);
        self.spawn(
            &format!("the agent of {node}"),
            &supervised,
            self.component_kubeconfig(&state, Some(node)).as_deref(),
            &self.files.agent_log(node),
            &self.files.supervisor_pid(node),
        )
    }

    pub(super) fn cluster_agent_args(&self, state: &LabState, node: &NodeConfig) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "agent".into(),
            "--node".into(),
            node.name.clone().into(),
            // As an operator would write it for a separate underlay NIC.
            "--tunnel-endpoint".into(),
            format!("interface={TUNNEL_INTERFACE}").into(),
            "--netns".into(),
            Self::node_namespace(&Self::prefix(state), &node.name).into(),
            "--state".into(),
            self.files.node_dir(&node.name).into(),
            "--cluster".into(),
            self.files.cluster().into(),
            "--resync-seconds".into(),
            "5".into(),
            "--cni-socket".into(),
            self.files.cni_socket(&node.name).into(),
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
    pub(super) fn start_controller(&self, state: &LabState) -> Result<(), LabError> {
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
        self.running(&self.files.controller_pid(), "controller")
    }

    /// The pid recorded in `pid_file`, if that process still runs as this
    /// lab's and its command line holds `marker` (a pid the kernel gave to
    /// another process since, or a zombie with no command line left, is not).
    pub(super) fn running(&self, pid_file: &Path, marker: &str) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        let ours = cmdline.contains(marker) && cmdline.contains(&*self.files.dir.to_string_lossy());
        ours.then_some(pid)
    }

    /// Runs the neutrino binary with `args` in a session of its own, logging
    /// to `log` and recording its pid in `pid_file`.
    pub(super) fn spawn(
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
            // The caller's filter, where it set one, reaches the components.
            let filter = std::env::var("NEUTRINO_LOG").unwrap_or_else(|_| "info,kube=warn".into());
            command.env("KUBECONFIG", file).env("NEUTRINO_LOG", filter);
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
        self.running(&self.files.agent_pid(node), node)
    }

    /// The pid of the supervisor that keeps `node`'s agent running.
    pub fn supervisor_pid(&self, node: &str) -> Option<i32> {
        self.running(&self.files.supervisor_pid(node), "supervise")
    }

    /// Stops `node`'s agent as Kubernetes deletes a pod: its supervisor
    /// and then the agent (SIGTERM, then SIGKILL after a grace period), so
    /// that nothing starts it again; returns whether one ran.
    pub fn stop_agent(&self, node: &str) -> bool {
        let supervised = self.supervisor_pid(node).map(stop).is_some();
        self.agent_pid(node).map(stop).is_some() || supervised
    }

    /// Kills `node`'s agent with SIGKILL, as a crash would; its supervisor
    /// starts it again.
    pub fn kill_agent(&self, node: &str) -> Option<i32> {
        let pid = self.agent_pid(node)?;
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        Some(pid)
    }

    /// Whether `node`'s agent runs, or its supervisor will start it again.
    pub fn agent_kept_running(&self, node: &str) -> bool {
        self.supervisor_pid(node).is_some() || self.agent_pid(node).is_some()
    }

    /// Refuses to wait for nodes whose agents nothing runs.
    pub(super) fn check_agents(&self, config: &ClusterConfig) -> Result<(), LabError> {
        let state = self.state()?;
        let stopped: Vec<&String> = config
            .nodes
            .iter()
            .map(|n| &n.name)
            .filter(|n| !self.agent_kept_running(n))
            .collect();
        if stopped.is_empty() {
            Ok(())
        } else {
            Err(not_running(&stopped, state.generation + 1))
        }
    }

    /// How `node`'s agent is, for `lab status`: its pid, and how often its
    /// supervisor started it again.
    pub fn agent_state(&self, node: &str) -> String {
        let restarts = read_restarts(&self.files, node).filter(|r| r.count > 0);
        let restarted = restarts.as_ref().map_or(String::new(), |r| {
            format!(
                ", {} restart{} (last: {})",
                r.count,
                if r.count == 1 { "" } else { "s" },
                r.last_exit
            )
        });
        match (self.agent_pid(node), self.supervisor_pid(node)) {
            (Some(pid), _) => format!("running ({pid}){restarted}"),
            (None, Some(_)) => format!("restarting{restarted}"),
            (None, None) => "not running".into(),
        }
    }

    /// Starts `node`'s agent again unless its supervisor will.
    pub fn restart_agent(&self, node: &str) -> Result<(), LabError> {
        if self.agent_kept_running(node) {
            return Ok(());
        }
        self.start_agent(node)
    }
}

/// Names the nodes whose agents nothing runs, at once rather than after a
/// timeout.
pub(super) fn not_running(nodes: &[&String], generation: u64) -> LabError {
    LabError::Setup(format!(
        "the agents of {nodes:?} are not running, so generation {generation} cannot be realised there; `lab down` and `lab up` start them again"
    ))
}

/// Stops a process: SIGTERM, two seconds' grace, then SIGKILL.
pub(super) fn stop(pid: i32) {
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
