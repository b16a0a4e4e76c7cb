//! Each node's agent kept running as a DaemonSet keeps its pod running: a
//! `neutrino lab supervise` process starts the agent, and starts it again
//! whenever it exits, after a backoff that doubles while it keeps failing
//! (1 s up to 16 s, back to 1 s once it has run for 30 s). The restarts are
//! counted in the node's directory for `lab status`. SIGTERM to the
//! supervisor stops the agent and then the supervisor, as deleting a pod
//! would; SIGKILL to the agent alone is a crash, and it comes back.

use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::time::{Duration, Instant};
use tokio::signal::unix::{SignalKind, signal};

use super::LabError;
use super::state::{Files, write_atomic};

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const LONGEST_BACKOFF: Duration = Duration::from_secs(16);
/// An agent that ran this long before exiting starts over at the first backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(30);

/// How often a node's agent was started again, and why it last ended.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Restarts {
    pub count: u32,
    pub last_exit: String,
}

/// The backoff after `previous`, given how long the agent ran.
pub fn next_backoff(previous: Option<Duration>, ran: Duration) -> Duration {
    match previous {
        _ if ran >= HEALTHY_RUN => FIRST_BACKOFF,
        None => FIRST_BACKOFF,
        Some(previous) => (previous * 2).min(LONGEST_BACKOFF),
    }
}

/// Runs `node`'s agent (`neutrino ARGS`) until SIGTERM.
pub async fn supervise(files: &Files, node: &str, args: &[OsString]) -> Result<(), LabError> {
    let binary = std::env::current_exe()
        .map_err(|e| LabError::io("finding the neutrino binary".into(), e))?;
    let mut terminate = signal(SignalKind::terminate())
        .map_err(|e| LabError::io("waiting for SIGTERM".into(), e))?;
    let mut restarts = Restarts::default();
    let mut backoff = None;
    write_restarts(files, node, &restarts)?;
    loop {
        let started = Instant::now();
        let mut child = tokio::process::Command::new(&binary)
            .args(args)
            .stdin(std::process::Stdio::null())
            .spawn()
            .map_err(|e| LabError::io(format!("starting the agent of {node}"), e))?;
        let pid = child.id().unwrap_or_default();
        write_atomic(&files.agent_pid(node), pid.to_string().as_bytes())
            .map_err(|e| LabError::io(format!("recording the pid of {node}'s agent"), e))?;
        let status = tokio::select! {
            status = child.wait() => status,
            _ = terminate.recv() => {
                stop_child(&mut child, pid).await;
                return Ok(());
            }
        };
        let exit = match status {
            Ok(status) => status.to_string(),
            Err(e) => format!("lost: {e}"),
        };
        let wait = next_backoff(backoff, started.elapsed());
        backoff = Some(wait);
        restarts.count += 1;
        restarts.last_exit = exit.clone();
        write_restarts(files, node, &restarts)?;
        tracing::warn!(%node, %exit, restart = restarts.count, backoff = ?wait, "agent ended; starting it again");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = terminate.recv() => return Ok(()),
        }
    }
}

/// SIGTERM, two seconds' grace, then SIGKILL.
async fn stop_child(child: &mut tokio::process::Child, pid: u32) {
    use nix::sys::signal::{Signal, kill};
    let _ = kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGTERM);
    if tokio::time::timeout(Duration::from_secs(2), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

fn write_restarts(files: &Files, node: &str, restarts: &Restarts) -> Result<(), LabError> {
    let text = serde_json::to_vec(restarts).expect("restarts serialize");
    write_atomic(&files.restarts(node), &text)
        .map_err(|e| LabError::io(format!("recording the restarts of {node}'s agent"), e))
}

/// The restarts of `node`'s agent, as its supervisor last wrote them.
pub fn read_restarts(files: &Files, node: &str) -> Option<Restarts> {
    serde_json::from_slice(&std::fs::read(files.restarts(node)).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_while_failing_and_starts_over_after_a_healthy_run() {
        let quick = Duration::from_millis(200);
        let mut backoff = None;
        let mut seen = Vec::new();
        for _ in 0..6 {
            let next = next_backoff(backoff, quick);
            seen.push(next.as_secs());
            backoff = Some(next);
        }
        assert_eq!(seen, [1, 2, 4, 8, 16, 16]);
        assert_eq!(next_backoff(backoff, HEALTHY_RUN), FIRST_BACKOFF);
    }
}
