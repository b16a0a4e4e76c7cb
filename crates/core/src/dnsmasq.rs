//! What a node's DHCP servers are given, in dnsmasq's terms — a command
//! line, an options file and the static hosts — and the changes that bring
//! the servers found on the node there.
//!
//! dnsmasq can add a host cheaply but not forget one: a file new in its
//! watched hosts directory is read at once, while a host removed or changed
//! stays until a reload, which re-reads everything (for a directory of one
//! file per host, in time quadratic in the files). So each server's hosts
//! live in one hosts file, read on a reload, and the hosts added since the
//! last reload in the watched directory, one file each. Adding a host
//! writes its file; removing or changing one rewrites the hosts file with
//! every host (folding the directory's files in), reloads, and releases the
//! removed host's lease, which would otherwise keep its address from anyone
//! else until it expires. Only a changed command line restarts the server.

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

use super::plan::{DhcpPlan, RouterLegPlan, RouterPlan};
use ipnet::IpNet;
use neutrino_api::Ipv6Mode;

/// One server as its plan wants it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Server {
    /// The namespace it runs in, which also names its directory.
    pub namespace: String,
    /// Its interface, to which a lease release is sent.
    pub interface: String,
    pub args: Vec<String>,
    pub options: String,
    /// Each host's line (`MAC,IP,NAME`), by the host's name.
    pub hosts: BTreeMap<String, String>,
}

/// One server's directory as found on the node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedServer {
    /// Its hosts and options directories both exist.
    pub prepared: bool,
    /// The command line it was last started with.
    pub args: Vec<String>,
    pub options: Option<String>,
    /// The hosts file's lines, by host name.
    pub listed: BTreeMap<String, String>,
    /// The files in the watched hosts directory, by name.
    pub added: BTreeMap<String, String>,
    /// A dnsmasq of this directory runs.
    pub running: bool,
}

impl ObservedServer {
    /// Every host the server was given, with every line it was given for it.
    fn hosts(&self) -> BTreeMap<&str, Vec<&str>> {
        let mut hosts: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, line) in self.listed.iter().chain(&self.added) {
            hosts.entry(name).or_default().push(line);
        }
        hosts
    }
}

/// The name a host's line is kept under: its MAC without colons.
pub fn host_name(line: &str) -> String {
    line.split(',').next().unwrap_or_default().replace(':', "")
}

/// The lines of a hosts file, by host name.
pub fn listed(content: &str) -> BTreeMap<String, String> {
    content
        .lines()
        .map(|line| (host_name(line), format!("{line}\n")))
        .collect()
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
    /// A file in the watched hosts directory: read at once, no reload.
    AddHost {
        namespace: String,
        name: String,
        content: String,
    },
    /// The hosts file written whole, and the watched directory's files,
    /// now in it, removed.
    ListHosts {
        namespace: String,
        content: String,
        folded: Vec<String>,
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
    /// Makes a running server read its hosts again, forgetting those gone.
    Reload {
        namespace: String,
    },
    /// Ends the lease a removed host may hold, so its address is free.
    Release {
        namespace: String,
        interface: String,
        ip: String,
        mac: String,
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
            | Self::AddHost { namespace, .. }
            | Self::ListHosts { namespace, .. }
            | Self::Release { namespace, .. }
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
            Self::AddHost { name, .. } => format!("adding host {name}"),
            Self::ListHosts { .. } => "writing its hosts file".into(),
            Self::Release { ip, mac, .. } => format!("releasing the lease of {ip} to {mac}"),
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
        interface: plan.interface.clone(),
        args: arguments(plan, dir),
        options: options(plan),
        hosts: host_files(plan),
    }
}

/// How often an advertising server sends router advertisements unasked,
/// in seconds; a port that asks (a router solicitation) is answered at once.
pub const RA_INTERVAL: u32 = 10;

/// How long a router's advertisements make it the default router, in
/// seconds (radvd's and Neutron's default).
pub const ROUTER_LIFETIME: u32 = 1800;

/// dnsmasq's `--dhcp-range` mode for an IPv6 prefix: advertised only
/// (SLAAC), advertised with DHCPv6 for options (stateless), or handed out
/// by DHCPv6 (stateful, and the default).
fn ipv6_range(prefix: IpNet, mode: Option<Ipv6Mode>) -> String {
    let (network, length) = (prefix.network(), prefix.prefix_len());
    match mode {
        Some(Ipv6Mode::Slaac) => format!("{network},ra-only,{length}"),
        Some(Ipv6Mode::Dhcpv6Stateless) => format!("{network},ra-stateless,{length}"),
        Some(Ipv6Mode::Dhcpv6Stateful) | None => format!("{network},static,{length}"),
    }
}

/// The start of every server's command line: no configuration file, DNS or
/// hosts of the node's, and bound to `interfaces` alone.
fn listening_on(interfaces: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--port=0",
    ]
    .map(String::from)
    .into();
    args.extend(interfaces.iter().map(|i| format!("--interface={i}")));
    args.extend(["--except-interface=lo".into(), "--bind-interfaces".into()]);
    args
}

/// The command line of a server: what a restart is needed for.
fn arguments(plan: &DhcpPlan, dir: &Path) -> Vec<String> {
    let d = |name: &str| dir.join(name).display().to_string();
    let cidr = plan.cidr;
    let autoconfigured = (plan.ipv6_address_mode).is_some_and(Ipv6Mode::is_autoconfigured);
    let range = if cidr.addr().is_ipv4() {
        format!("{},static,{}", cidr.network(), cidr.netmask())
    } else {
        ipv6_range(cidr, plan.ipv6_address_mode)
    };
    let mut args = listening_on(&[&plan.interface]);
    // Only a range that hands addresses out has leases. With SLAAC, DHCPv6
    // (stateless) answers whoever asks for options: no port need be known.
    if autoconfigured {
        args.push(format!("--dhcp-range={range}"));
    } else {
        args.push(format!("--dhcp-range={range},{}", plan.lease_seconds));
        args.push("--dhcp-ignore=tag:!known".into());
    }
    if plan.advertise {
        // The prefix and its flags, but not a default route: the DHCP
        // server is no router.
        args.push("--enable-ra".into());
        args.push(format!(
            "--ra-param={},mtu:{},{RA_INTERVAL},0",
            plan.interface, plan.mtu
        ));
    }
    args.extend([
        format!("--dhcp-hostsfile={}", d("hostsfile")),
        format!("--dhcp-hostsdir={}", d("hosts")),
        format!("--dhcp-lease-max={}", lease_max(plan)),
        format!("--dhcp-optsdir={}", d("options")),
        format!("--dhcp-leasefile={}", d("leases")),
        format!("--pid-file={}", d("pid")),
        format!("--log-facility={}", d("log")),
        // Nothing per packet: a workload's flood must not fill the node's
        // disk. Starts, reloads and errors are still logged.
        "--quiet-dhcp".into(),
        "--quiet-dhcp6".into(),
        "--quiet-ra".into(),
        "--user=root".into(),
    ]);
    args
}

/// The router advertisement server of a router whose legs advertise
/// (subnets with `ipv6RAMode`): one dnsmasq in its namespace that sends,
/// on each such leg, the prefix with its mode's flags and the router as
/// the default route. It hands out nothing: the DHCP servers do.
pub fn advertiser(router: &RouterPlan, dir: &Path) -> Option<Server> {
    let d = |name: &str| dir.join(name).display().to_string();
    let legs: Vec<(&RouterLegPlan, Ipv6Mode)> = (router.interfaces.iter())
        .filter_map(|leg| Some((leg, leg.advertise?)))
        .filter(|(leg, _)| leg.address.addr().is_ipv6())
        .collect();
    let first = legs.first()?.0;
    let interfaces: Vec<&str> = legs.iter().map(|(leg, _)| leg.interface.as_str()).collect();
    let mut args = listening_on(&interfaces);
    args.extend([
        "--enable-ra".into(),
        // A stateful prefix's range sets the managed flag; its DHCPv6 is
        // for the DHCP servers, so this one answers nobody.
        "--dhcp-ignore=tag:!known".into(),
    ]);
    for (leg, mode) in &legs {
        args.push(format!(
            "--dhcp-range={}",
            ipv6_range(leg.address.trunc(), Some(*mode))
        ));
        args.push(format!(
            "--ra-param={},mtu:{},{RA_INTERVAL},{ROUTER_LIFETIME}",
            leg.interface, leg.mtu
        ));
    }
    args.extend([
        format!("--dhcp-leasefile={}", d("leases")),
        format!("--pid-file={}", d("pid")),
        format!("--log-facility={}", d("log")),
        "--quiet-dhcp6".into(),
        "--quiet-ra".into(),
        "--user=root".into(),
    ]);
    Some(Server {
        namespace: router.namespace.clone(),
        interface: first.interface.clone(),
        args,
        options: String::new(),
        hosts: BTreeMap::new(),
    })
}

/// As many leases as the subnet has addresses (dnsmasq's default is
/// 1,000), up to a bound that keeps a huge IPv6 prefix sane.
fn lease_max(plan: &DhcpPlan) -> u64 {
    let bits = plan.cidr.max_prefix_len() - plan.cidr.prefix_len();
    1u64 << u32::from(bits).min(24)
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

/// Each host's line, by its name.
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
/// `desired`: per server its files first, then the process, then releases;
/// servers no longer wanted are stopped last.
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
        let given = found.hosts();
        // Lines the server holds that are not wanted as they are: a host
        // removed, or changed (dnsmasq keeps the old line until a reload).
        let stale: Vec<&str> = given
            .iter()
            .filter(|(name, lines)| {
                server
                    .hosts
                    .get(**name)
                    .is_none_or(|wanted| lines.iter().any(|l| l != wanted))
            })
            .flat_map(|(_, lines)| lines.iter().copied())
            .collect();
        let list = || DhcpChange::ListHosts {
            namespace: namespace(),
            content: server.hosts.values().map(String::as_str).collect(),
            folded: found.added.keys().cloned().collect(),
        };
        let args = server.args.clone();
        let fresh = !found.running || found.args != server.args;
        if fresh || !stale.is_empty() {
            changes.push(list());
        } else {
            changes.extend(
                server
                    .hosts
                    .iter()
                    .filter(|(name, _)| !given.contains_key(name.as_str()))
                    .map(|(name, content)| DhcpChange::AddHost {
                        namespace: namespace(),
                        name: name.clone(),
                        content: content.clone(),
                    }),
            );
        }
        match (found.running, found.args == server.args) {
            (true, true) if !stale.is_empty() => changes.push(DhcpChange::Reload {
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
        changes.extend(stale.iter().filter_map(|line| release(server, line)));
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

/// The release of the lease a host's `line` gave, if it is an IPv4 host
/// (an IPv6 lease is tied to a client's DUID, which the line does not
/// hold). A lease of the same host at its wanted address is kept.
fn release(server: &Server, line: &str) -> Option<DhcpChange> {
    let mut fields = line.trim_end().split(',');
    let (mac, ip) = (fields.next()?, fields.next()?);
    if ip.starts_with('[') || ip.parse::<std::net::Ipv4Addr>().is_err() {
        return None;
    }
    let kept = server
        .hosts
        .get(&host_name(line))
        .is_some_and(|wanted| wanted.split(',').nth(1) == Some(ip));
    (!kept).then(|| DhcpChange::Release {
        namespace: server.namespace.clone(),
        interface: server.interface.clone(),
        ip: ip.to_string(),
        mac: mac.to_string(),
    })
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
            ipv6_address_mode: None,
            advertise: false,
        }
    }

    fn host(mac: u8, ip: &str) -> DhcpHost {
        DhcpHost {
            mac: Mac([2, 0, 0, 0, 0, mac]),
            ip: ip.parse().unwrap(),
            hostname: format!("vm{mac}"),
        }
    }

    /// The server as it runs once `server` was applied: every host listed.
    fn running(server: &Server) -> ObservedServer {
        ObservedServer {
            prepared: true,
            args: server.args.clone(),
            options: Some(server.options.clone()),
            listed: server.hosts.clone(),
            added: BTreeMap::new(),
            running: true,
        }
    }

    const NS: &str = "nt-dhcp-x";
    const VM: &str = "02:00:00:00:00:09,10.0.0.9,vm\n";

    fn observed(server: ObservedServer) -> BTreeMap<String, ObservedServer> {
        [(NS.to_string(), server)].into()
    }

    fn list(content: &str, folded: &[&str]) -> DhcpChange {
        DhcpChange::ListHosts {
            namespace: NS.into(),
            content: content.into(),
            folded: folded.iter().map(|f| f.to_string()).collect(),
        }
    }

    fn release(ip: &str, mac: &str) -> DhcpChange {
        DhcpChange::Release {
            namespace: NS.into(),
            interface: "ns-x".into(),
            ip: ip.into(),
            mac: mac.into(),
        }
    }

    fn reload() -> DhcpChange {
        DhcpChange::Reload {
            namespace: NS.into(),
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
    fn an_ipv6_server_advertises_each_mode_as_no_router() {
        let mut v6 = plan();
        v6.cidr = "2001:db8::/64".parse().unwrap();
        v6.advertise = true;
        let range = |v6: &DhcpPlan| {
            let args = arguments(v6, dir());
            assert!(args.contains(&"--enable-ra".into()), "{args:?}");
            // Lifetime 0: the prefix, not a default route.
            assert!(
                args.contains(&"--ra-param=ns-x,mtu:1450,10,0".into()),
                "{args:?}"
            );
            let known = args.contains(&"--dhcp-ignore=tag:!known".into());
            let range = args.iter().find_map(|a| a.strip_prefix("--dhcp-range="));
            (range.unwrap().to_string(), known)
        };
        for (mode, expected, known) in [
            (Ipv6Mode::Slaac, "2001:db8::,ra-only,64", false),
            (
                Ipv6Mode::Dhcpv6Stateless,
                "2001:db8::,ra-stateless,64",
                false,
            ),
            (Ipv6Mode::Dhcpv6Stateful, "2001:db8::,static,64,600", true),
        ] {
            v6.ipv6_address_mode = Some(mode);
            assert_eq!(range(&v6), (expected.to_string(), known), "{mode}");
        }
        v6.advertise = false;
        assert!(!arguments(&v6, dir()).contains(&"--enable-ra".into()));
    }

    #[test]
    fn a_router_advertises_itself_on_its_advertising_legs_only() {
        let leg = |interface: &str, address: &str, advertise| RouterLegPlan {
            subnet: Key::new("t", interface),
            network: Key::new("t", "n"),
            bridge: "ntb-x".into(),
            bridge_port: format!("ntr-{interface}"),
            interface: interface.into(),
            mac: Mac([2, 0, 0, 0, 0, 1]),
            address: address.parse().unwrap(),
            mtu: 1450,
            advertise,
        };
        let mut router = RouterPlan {
            router: Key::new("t", "edge"),
            namespace: "nt-router-x".into(),
            interfaces: vec![
                leg("qr-4", "10.0.0.1/24", None),
                leg("qr-a", "2001:db8:1::1/64", Some(Ipv6Mode::Slaac)),
                leg("qr-b", "2001:db8:2::1/64", Some(Ipv6Mode::Dhcpv6Stateful)),
                leg("qr-c", "2001:db8:3::1/64", None),
            ],
            gateway: None,
            floating_ips: vec![],
            routes: vec![],
            nat: vec![],
        };
        let server = advertiser(&router, dir()).unwrap();
        assert_eq!(server.namespace, "nt-router-x");
        let args = server.args;
        for expected in [
            "--interface=qr-a",
            "--interface=qr-b",
            "--enable-ra",
            "--dhcp-range=2001:db8:1::,ra-only,64",
            "--ra-param=qr-a,mtu:1450,10,1800",
            "--dhcp-range=2001:db8:2::,static,64",
            "--ra-param=qr-b,mtu:1450,10,1800",
        ] {
            assert!(args.contains(&expected.to_string()), "{expected}: {args:?}");
        }
        assert!(
            !args
                .iter()
                .any(|a| a.contains("qr-4") || a.contains("qr-c")),
            "{args:?}"
        );
        router.interfaces.retain(|l| l.advertise.is_none());
        assert_eq!(advertiser(&router, dir()), None);
    }

    #[test]
    fn a_new_server_is_prepared_listed_and_started() {
        let wanted = server(&plan(), dir());
        assert_eq!(
            diff(std::slice::from_ref(&wanted), &BTreeMap::new()),
            vec![
                DhcpChange::Prepare {
                    namespace: NS.into()
                },
                DhcpChange::WriteOptions {
                    namespace: NS.into(),
                    content: wanted.options.clone(),
                },
                list(VM, &[]),
                DhcpChange::Start {
                    namespace: NS.into(),
                    args: wanted.args.clone(),
                },
            ]
        );
        assert!(wanted.args.contains(&"--dhcp-lease-max=256".to_string()));
        assert!(
            wanted
                .args
                .contains(&"--dhcp-hostsfile=/d/nt-dhcp-x/hostsfile".to_string())
        );
    }

    #[test]
    fn a_running_server_as_planned_needs_nothing() {
        let wanted = server(&plan(), dir());
        let found = observed(running(&wanted));
        assert_eq!(diff(std::slice::from_ref(&wanted), &found), vec![]);
        // Hosts added since the last reload count as given.
        let mut split = running(&wanted);
        split.added = std::mem::take(&mut split.listed);
        assert_eq!(diff(&[wanted], &observed(split)), vec![]);
    }

    #[test]
    fn a_new_host_is_one_file_and_no_reload() {
        let before = server(&plan(), dir());
        let mut more = plan();
        more.hosts.push(host(10, "10.0.0.10"));
        assert_eq!(
            diff(&[server(&more, dir())], &observed(running(&before))),
            vec![DhcpChange::AddHost {
                namespace: NS.into(),
                name: "02000000000a".into(),
                content: "02:00:00:00:00:0a,10.0.0.10,vm10\n".into(),
            }]
        );
    }

    #[test]
    fn a_removed_host_is_listed_away_reloaded_and_its_lease_released() {
        let mut two = plan();
        two.hosts.push(host(10, "10.0.0.10"));
        let mut given = running(&server(&two, dir()));
        // The second host came in through the watched directory.
        let added = given.listed.remove("02000000000a").unwrap();
        given.added.insert("02000000000a".into(), added);
        let mut one = plan();
        one.hosts.remove(0);
        one.hosts.push(host(10, "10.0.0.10"));
        assert_eq!(
            diff(&[server(&one, dir())], &observed(given.clone())),
            vec![
                list("02:00:00:00:00:0a,10.0.0.10,vm10\n", &["02000000000a"]),
                reload(),
                release("10.0.0.9", "02:00:00:00:00:09"),
            ]
        );
        let mut none = plan();
        none.hosts.clear();
        assert_eq!(
            diff(&[server(&none, dir())], &observed(given)),
            vec![
                list("", &["02000000000a"]),
                reload(),
                release("10.0.0.9", "02:00:00:00:00:09"),
                release("10.0.0.10", "02:00:00:00:00:0a"),
            ]
        );
    }

    #[test]
    fn a_changed_host_reloads_and_gives_up_only_an_address_it_no_longer_has() {
        let before = server(&plan(), dir());
        let mut moved = plan();
        moved.hosts[0].ip = "10.0.0.99".parse().unwrap();
        assert_eq!(
            diff(&[server(&moved, dir())], &observed(running(&before))),
            vec![
                list("02:00:00:00:00:09,10.0.0.99,vm\n", &[]),
                reload(),
                release("10.0.0.9", "02:00:00:00:00:09"),
            ]
        );
        let mut renamed = plan();
        renamed.hosts[0].hostname = "web".into();
        assert_eq!(
            diff(&[server(&renamed, dir())], &observed(running(&before))),
            vec![list("02:00:00:00:00:09,10.0.0.9,web\n", &[]), reload()]
        );
    }

    #[test]
    fn a_changed_range_restarts_and_a_dead_server_starts_again() {
        let before = server(&plan(), dir());
        let mut found = running(&before);
        let mut longer = plan();
        longer.lease_seconds = 3600;
        let wanted = server(&longer, dir());
        assert_eq!(
            diff(std::slice::from_ref(&wanted), &observed(found.clone())),
            vec![
                list(VM, &[]),
                DhcpChange::Restart {
                    namespace: NS.into(),
                    args: wanted.args.clone(),
                }
            ]
        );
        found.running = false;
        assert_eq!(
            diff(std::slice::from_ref(&before), &observed(found)),
            vec![
                list(VM, &[]),
                DhcpChange::Start {
                    namespace: NS.into(),
                    args: before.args.clone(),
                }
            ]
        );
    }

    #[test]
    fn an_edited_hosts_file_is_listed_again_and_servers_no_plan_wants_stop() {
        let wanted = server(&plan(), dir());
        let mut edited = running(&wanted);
        edited
            .listed
            .insert("020000000009".into(), "garbage\n".into());
        let mut found = observed(edited);
        found.insert("nt-dhcp-gone".into(), ObservedServer::default());
        assert_eq!(
            diff(&[wanted], &found),
            vec![
                list(VM, &[]),
                reload(),
                DhcpChange::Stop {
                    namespace: "nt-dhcp-gone".into()
                },
            ]
        );
    }
}
