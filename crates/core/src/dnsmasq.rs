//! What a node's DHCP servers are given, in dnsmasq's terms — a command
//! line, an options file and one file per host — and the changes that bring
//! the servers found on the node there.
//!
//! Hosts and options live in directories dnsmasq watches, so a new or
//! changed host reaches a running server without a restart; a removed host
//! takes a reload, which keeps the process and its leases; only a changed
//! command line restarts it.

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

use super::plan::DhcpPlan;

/// One server as its plan wants it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Server {
    /// The namespace it runs in, which also names its directory.
    pub namespace: String,
    pub args: Vec<String>,
    pub options: String,
    /// Host files by name.
    pub hosts: BTreeMap<String, String>,
}

/// One server's directory as found on the node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedServer {
    /// Its host and options directories both exist.
    pub prepared: bool,
    /// The command line it was last started with.
    pub args: Vec<String>,
    pub options: Option<String>,
    pub hosts: BTreeMap<String, String>,
    /// A dnsmasq of this directory runs.
    pub running: bool,
}

/// One change to a node's DHCP servers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum DhcpChange {
    /// Makes the server's directories.
    Prepare {
        namespace: String,
    },
    WriteOptions {
        namespace: String,
        content: String,
    },
    WriteHost {
        namespace: String,
        name: String,
        content: String,
    },
    RemoveHost {
        namespace: String,
        name: String,
    },
    Start {
        namespace: String,
        args: Vec<String>,
    },
    /// Stops the running server and starts it with a new command line.
    Restart {
        namespace: String,
        args: Vec<String>,
    },
    /// Makes a running server forget the host files removed.
    Reload {
        namespace: String,
    },
    /// Stops a server no plan wants, if it runs, and removes its directory.
    Stop {
        namespace: String,
    },
}

impl DhcpChange {
    /// The namespace of the server it changes.
    pub fn namespace(&self) -> &str {
        match self {
            Self::Prepare { namespace }
            | Self::WriteOptions { namespace, .. }
            | Self::WriteHost { namespace, .. }
            | Self::RemoveHost { namespace, .. }
            | Self::Start { namespace, .. }
            | Self::Restart { namespace, .. }
            | Self::Reload { namespace }
            | Self::Stop { namespace } => namespace,
        }
    }

    /// What it does, for an error.
    pub fn what(&self) -> String {
        match self {
            Self::Prepare { .. } => "creating its directory".into(),
            Self::WriteOptions { .. } => "writing its options".into(),
            Self::WriteHost { name, .. } => format!("writing host {name}"),
            Self::RemoveHost { name, .. } => format!("removing host {name}"),
            Self::Start { .. } => "starting dnsmasq".into(),
            Self::Restart { .. } => "restarting dnsmasq".into(),
            Self::Reload { .. } => "reloading".into(),
            Self::Stop { .. } => "stopping".into(),
        }
    }
}

/// The server of `plan`, whose files are under `dir`.
pub fn server(plan: &DhcpPlan, dir: &Path) -> Server {
    Server {
        namespace: plan.namespace.clone(),
        args: arguments(plan, dir),
        options: options(plan),
        hosts: host_files(plan),
    }
}

/// The command line of a server: what a restart is needed for.
fn arguments(plan: &DhcpPlan, dir: &Path) -> Vec<String> {
    let d = |name: &str| dir.join(name).display().to_string();
    let cidr = plan.cidr;
    let mask = if cidr.addr().is_ipv4() {
        cidr.netmask().to_string()
    } else {
        cidr.prefix_len().to_string()
    };
    let range = format!("{},static,{mask},{}", cidr.network(), plan.lease_seconds);
    vec![
        "--conf-file=/dev/null".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--port=0".into(),
        format!("--interface={}", plan.interface),
        "--except-interface=lo".into(),
        "--bind-interfaces".into(),
        format!("--dhcp-range={range}"),
        "--dhcp-ignore=tag:!known".into(),
        format!("--dhcp-hostsdir={}", d("hosts")),
        format!("--dhcp-optsdir={}", d("options")),
        format!("--dhcp-leasefile={}", d("leases")),
        format!("--pid-file={}", d("pid")),
        format!("--log-facility={}", d("log")),
        "--log-dhcp".into(),
        "--user=root".into(),
    ]
}

/// The options file: gateway, DNS servers, classless routes and MTU. An
/// option written without a value is one dnsmasq must not send (it would
/// offer itself as the router otherwise).
fn options(plan: &DhcpPlan) -> String {
    let mut lines = Vec::new();
    if plan.cidr.addr().is_ipv4() {
        lines.push(match plan.router {
            Some(router) => format!("option:router,{router}"),
            None => "option:router".into(),
        });
        if !plan.dns.is_empty() {
            let dns: Vec<String> = plan.dns.iter().map(ToString::to_string).collect();
            lines.push(format!("option:dns-server,{}", dns.join(",")));
        }
        if !plan.routes.is_empty() {
            let routes: Vec<String> = plan
                .routes
                .iter()
                .map(|r| format!("{},{}", r.destination, r.nexthop))
                .collect();
            lines.push(format!(
                "option:classless-static-route,{}",
                routes.join(",")
            ));
        }
        lines.push(format!("option:mtu,{}", plan.mtu));
    } else if !plan.dns.is_empty() {
        let dns: Vec<String> = plan.dns.iter().map(|d| format!("[{d}]")).collect();
        lines.push(format!("option6:dns-server,{}", dns.join(",")));
    }
    lines.join("\n") + "\n"
}

/// Each host's file, named by its MAC.
fn host_files(plan: &DhcpPlan) -> BTreeMap<String, String> {
    plan.hosts
        .iter()
        .map(|h| {
            let ip = if h.ip.is_ipv6() {
                format!("[{}]", h.ip)
            } else {
                h.ip.to_string()
            };
            (
                h.mac.to_string().replace(':', ""),
                format!("{},{ip},{}\n", h.mac, h.hostname),
            )
        })
        .collect()
}

/// The changes that take the servers `observed` (by namespace) to
/// `desired`: per server its files first, then the process; servers no
/// longer wanted are stopped last.
pub fn diff(desired: &[Server], observed: &BTreeMap<String, ObservedServer>) -> Vec<DhcpChange> {
    let mut changes = Vec::new();
    let absent = ObservedServer::default();
    for server in desired {
        let found = observed.get(&server.namespace).unwrap_or(&absent);
        let namespace = || server.namespace.clone();
        if !found.prepared {
            changes.push(DhcpChange::Prepare {
                namespace: namespace(),
            });
        }
        if found.options.as_ref() != Some(&server.options) {
            changes.push(DhcpChange::WriteOptions {
                namespace: namespace(),
                content: server.options.clone(),
            });
        }
        for (name, content) in &server.hosts {
            if found.hosts.get(name) != Some(content) {
                changes.push(DhcpChange::WriteHost {
                    namespace: namespace(),
                    name: name.clone(),
                    content: content.clone(),
                });
            }
        }
        let mut removed = false;
        for name in found.hosts.keys() {
            if !server.hosts.contains_key(name) {
                changes.push(DhcpChange::RemoveHost {
                    namespace: namespace(),
                    name: name.clone(),
                });
                removed = true;
            }
        }
        let args = server.args.clone();
        match (found.running, found.args == server.args) {
            // Deleted host files are only forgotten on a reload.
            (true, true) if removed => changes.push(DhcpChange::Reload {
                namespace: namespace(),
            }),
            (true, true) => {}
            (true, false) => changes.push(DhcpChange::Restart {
                namespace: namespace(),
                args,
            }),
            (false, _) => changes.push(DhcpChange::Start {
                namespace: namespace(),
                args,
            }),
        }
    }
    changes.extend(
        observed
            .keys()
            .filter(|name| !desired.iter().any(|s| &s.namespace == *name))
            .map(|name| DhcpChange::Stop {
                namespace: name.clone(),
            }),
    );
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Key;
    use crate::allocate::Mac;
    use crate::plan::{DhcpHost, RoutePlan};

    fn plan() -> DhcpPlan {
        DhcpPlan {
            subnet: Key::new("t", "s"),
            network: Key::new("t", "n"),
            namespace: "nt-dhcp-x".into(),
            bridge: "ntb-x".into(),
            bridge_port: "ntd-x".into(),
            interface: "ns-x".into(),
            mac: Mac([2, 0, 0, 0, 0, 1]),
            cidr: "10.0.0.0/24".parse().unwrap(),
            address: "10.0.0.2/24".parse().unwrap(),
            router: None,
            dns: vec!["10.0.0.53".parse().unwrap()],
            routes: vec![RoutePlan {
                destination: "192.168.0.0/16".parse().unwrap(),
                nexthop: "10.0.0.254".parse().unwrap(),
            }],
            mtu: 1450,
            lease_seconds: 600,
            hosts: vec![DhcpHost {
                mac: Mac([2, 0, 0, 0, 0, 9]),
                ip: "10.0.0.9".parse().unwrap(),
                hostname: "vm".into(),
            }],
        }
    }

    fn host(mac: u8, ip: &str) -> DhcpHost {
        DhcpHost {
            mac: Mac([2, 0, 0, 0, 0, mac]),
            ip: ip.parse().unwrap(),
            hostname: format!("vm{mac}"),
        }
    }

    /// The server as it runs once `server` was applied.
    fn running(server: &Server) -> ObservedServer {
        ObservedServer {
            prepared: true,
            args: server.args.clone(),
            options: Some(server.options.clone()),
            hosts: server.hosts.clone(),
            running: true,
        }
    }

    fn dir() -> &'static Path {
        Path::new("/d/nt-dhcp-x")
    }

    #[test]
    fn options_never_offer_the_server_as_router() {
        assert_eq!(
            options(&plan()),
            "option:router\n\
             option:dns-server,10.0.0.53\n\
             option:classless-static-route,192.168.0.0/16,10.0.0.254\n\
             option:mtu,1450\n"
        );
    }

    #[test]
    fn hosts_and_range_are_static() {
        let args = arguments(&plan(), dir());
        assert!(
            args.contains(&"--dhcp-range=10.0.0.0,static,255.255.255.0,600".to_string()),
            "{args:?}"
        );
        assert!(args.contains(&"--dhcp-ignore=tag:!known".to_string()));
        assert!(args.contains(&"--dhcp-hostsdir=/d/nt-dhcp-x/hosts".to_string()));
        assert_eq!(
            host_files(&plan()),
            [(
                "020000000009".to_string(),
                "02:00:00:00:00:09,10.0.0.9,vm\n".to_string()
            )]
            .into()
        );
    }

    #[test]
    fn an_ipv6_server_gets_a_prefix_length_and_bracketed_hosts() {
        let mut v6 = plan();
        v6.cidr = "2001:db8::/64".parse().unwrap();
        v6.dns = vec!["2001:db8::53".parse().unwrap()];
        v6.hosts = vec![host(9, "2001:db8::9")];
        assert!(arguments(&v6, dir()).contains(&"--dhcp-range=2001:db8::,static,64,600".into()));
        assert_eq!(options(&v6), "option6:dns-server,[2001:db8::53]\n");
        assert_eq!(
            host_files(&v6).into_values().collect::<Vec<_>>(),
            vec!["02:00:00:00:00:09,[2001:db8::9],vm9\n".to_string()]
        );
    }

    #[test]
    fn a_new_server_is_prepared_filled_and_started() {
        let wanted = server(&plan(), dir());
        assert_eq!(
            diff(std::slice::from_ref(&wanted), &BTreeMap::new()),
            vec![
                DhcpChange::Prepare {
                    namespace: "nt-dhcp-x".into()
                },
                DhcpChange::WriteOptions {
                    namespace: "nt-dhcp-x".into(),
                    content: wanted.options.clone(),
                },
                DhcpChange::WriteHost {
                    namespace: "nt-dhcp-x".into(),
                    name: "020000000009".into(),
                    content: "02:00:00:00:00:09,10.0.0.9,vm\n".into(),
                },
                DhcpChange::Start {
                    namespace: "nt-dhcp-x".into(),
                    args: wanted.args.clone(),
                },
            ]
        );
    }

    #[test]
    fn a_running_server_as_planned_needs_nothing() {
        let wanted = server(&plan(), dir());
        let observed = [("nt-dhcp-x".to_string(), running(&wanted))].into();
        assert_eq!(diff(&[wanted], &observed), vec![]);
    }

    #[test]
    fn a_new_host_is_written_and_a_removed_one_reloads() {
        let before = server(&plan(), dir());
        let observed = [("nt-dhcp-x".to_string(), running(&before))].into();
        let mut more = plan();
        more.hosts.push(host(10, "10.0.0.10"));
        assert_eq!(
            diff(&[server(&more, dir())], &observed),
            vec![DhcpChange::WriteHost {
                namespace: "nt-dhcp-x".into(),
                name: "02000000000a".into(),
                content: "02:00:00:00:00:0a,10.0.0.10,vm10\n".into(),
            }]
        );
        let mut fewer = plan();
        fewer.hosts.clear();
        assert_eq!(
            diff(&[server(&fewer, dir())], &observed),
            vec![
                DhcpChange::RemoveHost {
                    namespace: "nt-dhcp-x".into(),
                    name: "020000000009".into(),
                },
                DhcpChange::Reload {
                    namespace: "nt-dhcp-x".into()
                },
            ]
        );
    }

    #[test]
    fn a_changed_range_restarts_and_a_dead_server_starts_again() {
        let before = server(&plan(), dir());
        let mut observed: BTreeMap<_, _> = [("nt-dhcp-x".to_string(), running(&before))].into();
        let mut longer = plan();
        longer.lease_seconds = 3600;
        let wanted = server(&longer, dir());
        assert_eq!(
            diff(std::slice::from_ref(&wanted), &observed),
            vec![DhcpChange::Restart {
                namespace: "nt-dhcp-x".into(),
                args: wanted.args.clone(),
            }]
        );
        observed.get_mut("nt-dhcp-x").unwrap().running = false;
        assert_eq!(
            diff(std::slice::from_ref(&before), &observed),
            vec![DhcpChange::Start {
                namespace: "nt-dhcp-x".into(),
                args: before.args.clone(),
            }]
        );
    }

    #[test]
    fn an_edited_host_file_is_written_again_and_servers_no_plan_wants_stop() {
        let wanted = server(&plan(), dir());
        let mut edited = running(&wanted);
        edited
            .hosts
            .insert("020000000009".into(), "garbage\n".into());
        let observed = [
            ("nt-dhcp-x".to_string(), edited),
            ("nt-dhcp-gone".to_string(), ObservedServer::default()),
        ]
        .into();
        assert_eq!(
            diff(&[wanted], &observed),
            vec![
                DhcpChange::WriteHost {
                    namespace: "nt-dhcp-x".into(),
                    name: "020000000009".into(),
                    content: "02:00:00:00:00:09,10.0.0.9,vm\n".into(),
                },
                DhcpChange::Stop {
                    namespace: "nt-dhcp-gone".into()
                },
            ]
        );
    }
}
