//! A call as the runtime makes it: the command and its parameters, from
//! the plugin's environment.

use std::collections::BTreeMap;

use crate::outcome::{CniError, Code};

/// The commands of CNI 1.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Status => "STATUS",
            Command::Gc => "GC",
        }
    }
}

/// One call's parameters. An attachment is keyed by container and
/// interface name (with the network's name, from the configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub command: Command,
    pub container_id: String,
    /// The container's network namespace, as a path; may be gone on DEL.
    pub netns: Option<String>,
    pub ifname: String,
    /// `CNI_ARGS`: Multus and kubelet pass the pod here
    /// (`K8S_POD_NAMESPACE`, `K8S_POD_NAME`, `K8S_POD_UID`).
    pub args: BTreeMap<String, String>,
}

fn invalid(details: String) -> CniError {
    CniError::new(Code::InvalidEnvironment, "invalid CNI environment", details)
}

impl Call {
    /// The call `env` (the process's environment) describes; the error
    /// names the variable.
    pub fn from_env(env: &BTreeMap<String, String>) -> Result<Self, CniError> {
        let get = |name: &str| env.get(name).filter(|v| !v.is_empty()).cloned();
        let text = get("CNI_COMMAND").ok_or_else(|| invalid("CNI_COMMAND is not set".into()))?;
        let command = Command::parse(&text).ok_or_else(|| {
            invalid(format!(
                "CNI_COMMAND {text:?} is none of ADD, DEL, CHECK, VERSION, STATUS, GC"
            ))
        })?;
        let needs = |name: &str| {
            get(name).ok_or_else(|| invalid(format!("{name} is needed for {}", command.name())))
        };
        let (container_id, netns, ifname) = match command {
            Command::Add | Command::Check => (
                needs("CNI_CONTAINERID")?,
                Some(needs("CNI_NETNS")?),
                needs("CNI_IFNAME")?,
            ),
            Command::Del => (
                needs("CNI_CONTAINERID")?,
                get("CNI_NETNS"),
                needs("CNI_IFNAME")?,
            ),
            Command::Version | Command::Status | Command::Gc => {
                (String::new(), None, String::new())
            }
        };
        let mut args = BTreeMap::new();
        for pair in get("CNI_ARGS").iter().flat_map(|a| a.split(';')) {
            if pair.is_empty() {
                continue;
            }
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| invalid(format!("CNI_ARGS: {pair:?} is not KEY=VALUE")))?;
            args.insert(key.to_string(), value.to_string());
        }
        Ok(Call {
            command,
            container_id,
            netns,
            ifname,
            args,
        })
    }

    /// The pod the call is for, when the runtime said: namespace and name.
    pub fn pod(&self) -> Option<(&str, &str)> {
        let namespace = self.args.get("K8S_POD_NAMESPACE")?;
        let name = self.args.get("K8S_POD_NAME")?;
        Some((namespace, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn an_add_from_multus_names_its_pod() {
        let call = Call::from_env(&env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", "/var/run/netns/pod"),
            ("CNI_IFNAME", "net1"),
            (
                "CNI_ARGS",
                "IgnoreUnknown=true;K8S_POD_NAMESPACE=tenant-a;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc",
            ),
        ]))
        .unwrap();
        assert_eq!(call.command, Command::Add);
        assert_eq!(call.pod(), Some(("tenant-a", "web-0")));
        assert_eq!(call.netns.as_deref(), Some("/var/run/netns/pod"));
    }

    #[test]
    fn a_del_needs_no_namespace_and_gc_and_status_need_nothing() {
        let del = Call::from_env(&env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_IFNAME", "net1"),
        ]))
        .unwrap();
        assert_eq!(del.netns, None);
        for command in ["GC", "STATUS", "VERSION"] {
            assert!(
                Call::from_env(&env(&[("CNI_COMMAND", command)])).is_ok(),
                "{command}"
            );
        }
    }

    #[test]
    fn a_bad_environment_names_the_variable() {
        let cases = [
            (vec![], "CNI_COMMAND is not set"),
            (vec![("CNI_COMMAND", "PLUG")], "\"PLUG\""),
            (
                vec![
                    ("CNI_COMMAND", "ADD"),
                    ("CNI_CONTAINERID", "a"),
                    ("CNI_IFNAME", "x"),
                ],
                "CNI_NETNS is needed for ADD",
            ),
            (
                vec![("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "a")],
                "CNI_IFNAME is needed for DEL",
            ),
            (
                vec![("CNI_COMMAND", "GC"), ("CNI_ARGS", "K8S_POD_NAME")],
                "CNI_ARGS: \"K8S_POD_NAME\"",
            ),
        ];
        for (pairs, expected) in cases {
            let error = Call::from_env(&env(&pairs)).unwrap_err();
            assert_eq!(error.code, Code::InvalidEnvironment as u32);
            assert!(error.details.contains(expected), "{}", error.details);
        }
    }
}
