//! What the plugin and the node's agent say to each other over the agent's
//! Unix socket: one request, one reply, each a JSON document, per
//! connection. The plugin holds no credentials; the agent does the work.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::call::{Call, Command};
use crate::outcome::{Attached, CniError};

/// A call, passed on with the configuration as the runtime gave it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub command: String,
    pub container_id: String,
    pub netns: Option<String>,
    pub ifname: String,
    pub args: BTreeMap<String, String>,
    /// The network configuration, whole: the agent reads what it needs.
    pub conf: serde_json::Value,
}

impl Request {
    pub fn new(call: &Call, conf: serde_json::Value) -> Self {
        Request {
            command: call.command.name().to_string(),
            container_id: call.container_id.clone(),
            netns: call.netns.clone(),
            ifname: call.ifname.clone(),
            args: call.args.clone(),
            conf,
        }
    }

    pub fn command(&self) -> Option<Command> {
        Command::parse(&self.command)
    }
}

/// The agent's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Reply {
    /// ADD: what was attached.
    Attached(Attached),
    /// DEL, CHECK, GC, STATUS: done, nothing to print.
    Done,
    Failed(CniError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Code;

    #[test]
    fn replies_travel_as_json_and_back() {
        for reply in [
            Reply::Done,
            Reply::Attached(Attached::default()),
            Reply::Failed(CniError::new(Code::TryAgainLater, "busy", "")),
        ] {
            let text = serde_json::to_string(&reply).unwrap();
            assert_eq!(
                serde_json::from_str::<Reply>(&text).unwrap(),
                reply,
                "{text}"
            );
        }
    }
}
