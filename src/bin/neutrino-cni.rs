//! `neutrino-cni`: the plugin a container runtime or Multus runs. It reads
//! the call from its environment and the configuration from standard
//! input, answers VERSION itself, and passes everything else to the node's
//! agent over its Unix socket; it prints the result, or the error, in the
//! version the configuration asked for.
//!
//! DEL succeeds when the agent cannot be reached: a pod must never be
//! stuck terminating on a plugin's account, and the agent removes what is
//! left of an attachment whose pod is gone when it returns.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use neutrino_cni::outcome::{CniError, Code};
use neutrino_cni::version;
use neutrino_cni::wire::{Reply, Request};
use neutrino_cni::{Call, Command, NetConf};

/// The variable that names the agent's socket on this node, when the
/// configuration does not.
const SOCKET_VARIABLE: &str = "NEUTRINO_CNI_SOCKET";

/// The version an error is written in when the configuration names none.
const FALLBACK_VERSION: &str = "1.1.0";

/// How long the agent may take: an ADD waits for the controller's
/// allocation and the agent's plug, which the agent bounds by less.
const ANSWER_WITHIN: Duration = Duration::from_secs(90);

fn main() -> ExitCode {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let mut input = Vec::new();
    let read = std::io::stdin().read_to_end(&mut input);
    let asked = asked_version(&input);
    let outcome = read
        .map_err(|e| CniError::new(Code::Io, "reading the configuration", e.to_string()))
        .and_then(|_| run(&env, &input));
    let mut out = std::io::stdout();
    match outcome {
        Ok(Some(printed)) => {
            let _ = writeln!(out, "{printed}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(out, "{}", error.to_json(&asked));
            ExitCode::FAILURE
        }
    }
}

/// The `cniVersion` the input names, for writing an error in.
fn asked_version(input: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(input)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string))
        .unwrap_or_else(|| FALLBACK_VERSION.to_string())
}

/// What to print on success, if anything.
fn run(env: &BTreeMap<String, String>, input: &[u8]) -> Result<Option<String>, CniError> {
    let call = Call::from_env(env)?;
    if call.command == Command::Version {
        return Ok(Some(version::report(&asked_version(input)).to_string()));
    }
    let conf = NetConf::parse(input)?;
    let shape = version::shape(&conf.cni_version)?;
    if !version::knows(&conf.cni_version, call.command.name()) {
        return Err(CniError::new(
            Code::IncompatibleVersion,
            format!(
                "{} is not part of CNI {}",
                call.command.name(),
                conf.cni_version
            ),
            format!("supported versions: {}", version::SUPPORTED.join(", ")),
        ));
    }
    let raw: serde_json::Value = serde_json::from_slice(input)
        .map_err(|e| CniError::new(Code::Decoding, "the network configuration", e.to_string()))?;
    let request = Request::new(&call, raw);
    let socket = conf.socket(env.get(SOCKET_VARIABLE).map(String::as_str));
    let reply = match ask(&socket, &request) {
        Ok(reply) => reply,
        Err(cause) => return unreachable(call.command, &socket, &cause),
    };
    match reply {
        Reply::Attached(attached) if call.command == Command::Add => {
            Ok(Some(attached.to_json(&conf.cni_version, shape).to_string()))
        }
        Reply::Done if call.command != Command::Add => Ok(None),
        Reply::Failed(error) => Err(error),
        other => Err(CniError::new(
            Code::Agent,
            "the agent answered out of turn",
            format!("{} got {other:?}", call.command.name()),
        )),
    }
}

/// What a call does when the agent cannot be asked.
fn unreachable(
    command: Command,
    socket: &Path,
    cause: &std::io::Error,
) -> Result<Option<String>, CniError> {
    let details = format!("the agent's socket {}: {cause}", socket.display());
    match command {
        Command::Del => Ok(None),
        Command::Status => Err(CniError::new(
            Code::NotAvailable,
            "neutrino's agent on this node is not running",
            details,
        )),
        _ => Err(CniError::new(
            Code::TryAgainLater,
            "neutrino's agent on this node cannot be reached",
            details,
        )),
    }
}

/// One request to the agent, and its reply.
fn ask(socket: &Path, request: &Request) -> std::io::Result<Reply> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(ANSWER_WITHIN))?;
    stream.set_write_timeout(Some(ANSWER_WITHIN))?;
    serde_json::to_writer(&mut stream, request)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    serde_json::from_slice(&answer).map_err(std::io::Error::other)
}
