//! Workloads: for every bound port, a namespace that stands for the VM or
//! pod. The port's veth end moves in as `eth0` (`dataplane::workload`, as
//! a CNI plugin would move it) and takes its addresses the way a guest
//! does: IPv4 from a real DHCP client (busybox udhcpc), IPv6 from router
//! advertisements (the kernel's SLAAC) and a real DHCPv6 client (ISC
//! dhclient).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::LabError;
use super::state::{Ipv6Lease, Lease};
use neutrino_api::Ipv6Mode;
use neutrino_dataplane::netlink::NetlinkError;
use neutrino_dataplane::workload::PlugError;
use neutrino_dataplane::{netns, workload};
use std::net::Ipv6Addr;

/// The guest's interface.
pub const GUEST_INTERFACE: &str = "eth0";

/// The DHCP client's script: configures the interface the way a guest's
/// network scripts do (address, MTU, classless routes or the router) and
/// records the lease for `lab status` and the tests.
const SCRIPT: &str = r#"#!/bin/sh
# Called by udhcpc with the lease in its environment.
case "$1" in
deconfig)
    ip -4 addr flush dev "$interface"
    ip link set dev "$interface" up
    ;;
bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    if [ -n "$staticroutes" ]; then
        set -- $staticroutes
        while [ $# -ge 2 ]; do
            ip route replace "$1" via "$2" dev "$interface"
            shift 2
        done
    elif [ -n "$router" ]; then
        for r in $router; do
            ip route replace default via "$r" dev "$interface"
            break
        done
    fi
    cat > "$LEASE_FILE.tmp" <<LEASE
{"ip": "$ip", "prefix": "$mask", "router": "$router", "mtu": "$mtu", "routes": "$staticroutes", "dns": "$dns", "server": "$serverid"}
LEASE
    mv "$LEASE_FILE.tmp" "$LEASE_FILE"
    ;;
esac
exit 0
"#;

/// The DHCPv6 client's script: puts a stateful lease's address on the
/// interface (a /128, as DHCPv6 gives it; the prefix is on-link by the
/// advertisements) and records what it got. No duplicate address
/// detection: the address is the port's by allocation. dhclient hands its
/// script an environment of its own making, so the lease file's path is
/// written into the script ahead of this.
const SCRIPT6: &str = r#"
# Called by dhclient -6 with the lease in its environment.
case "$reason" in
BOUND6|RENEW6|REBIND6|REBOOT6)
    ip -6 addr replace "$new_ip6_address/$new_ip6_prefixlen" dev "$interface" nodad
    printf '{"address": "%s", "dns": "%s"}\n' "$new_ip6_address" "$new_dhcp6_name_servers" >"$LEASE_FILE.tmp"
    mv "$LEASE_FILE.tmp" "$LEASE_FILE"
    ;;
INFORM6)
    printf '{"address": "", "dns": "%s"}\n' "$new_dhcp6_name_servers" >"$LEASE_FILE.tmp"
    mv "$LEASE_FILE.tmp" "$LEASE_FILE"
    ;;
esac
exit 0
"#;

/// How long a workload waits for its IPv6 link-local address to pass
/// duplicate address detection, and for SLAAC after an advertisement.
const IPV6_PATIENCE: Duration = Duration::from_secs(15);

/// How long plugging waits for the agent to make a port's veth: a port
/// Ready again (its node trusted again, say) may be shown realised a
/// moment before its agent has made the veth anew, as a pod's sandbox
/// would find it.
const PEER_PATIENCE: Duration = Duration::from_secs(15);

/// Moves the port's veth end from the node into the workload's namespace
/// as `eth0` and brings it and loopback up.
pub async fn plug(node_namespace: &str, peer: &str, namespace: &str) -> Result<(), LabError> {
    let deadline = Instant::now() + PEER_PATIENCE;
    loop {
        match workload::plug(Some(node_namespace), peer, namespace, GUEST_INTERFACE).await {
            Err(PlugError::Kernel(NetlinkError::NoLink { .. })) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            result => return result.map_err(|e| LabError::Setup(e.to_string())),
        }
    }
}

/// Whether the workload's namespace has its `eth0`.
pub async fn is_plugged(namespace: &str) -> bool {
    workload::is_plugged(namespace, GUEST_INTERFACE).await
}

/// Writes a DHCP client's script `name` into `dir`, executable.
fn write_script(dir: &Path, name: &str, text: &str) -> Result<std::path::PathBuf, LabError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
    let script = dir.join(name);
    let failed = |e| LabError::io(format!("writing {}", script.display()), e);
    std::fs::write(&script, text).map_err(failed)?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).map_err(failed)?;
    Ok(script)
}

/// Runs the DHCP client once in the workload and returns the lease.
pub fn dhcp(namespace: &str, dir: &Path) -> Result<Lease, LabError> {
    dhcp_on(namespace, GUEST_INTERFACE, dir)
}

/// Runs the DHCP client once on `interface` of the namespace `namespace`
/// (a name, or a runtime's path) and returns the lease; its files go in
/// `dir`.
pub fn dhcp_on(namespace: &str, interface: &str, dir: &Path) -> Result<Lease, LabError> {
    let script = write_script(dir, "udhcpc.sh", SCRIPT)?;
    let lease_file = dir.join("lease.json");
    let _ = std::fs::remove_file(&lease_file);
    let output = netns::command(namespace, "udhcpc")
        .map_err(|e| LabError::io(format!("entering {namespace}"), e))?
        .args([
            "-i",
            interface,
            "-f",
            "-q",
            "-n",
            "-t",
            "10",
            "-T",
            "1",
            "-A",
            "1",
            "-O",
            "mtu",
            "-O",
            "staticroutes",
            "-s",
        ])
        .arg(&script)
        .env("LEASE_FILE", &lease_file)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LabError::io("running udhcpc (is it installed?)".into(), e))?;
    if !output.status.success() {
        return Err(LabError::Setup(format!(
            "no DHCP lease in {namespace}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let text = std::fs::read_to_string(&lease_file)
        .map_err(|e| LabError::io("reading the lease".into(), e))?;
    serde_json::from_str(&text)
        .map_err(|e| LabError::Setup(format!("reading the lease of {namespace}: {e}")))
}

/// Takes the workload's IPv6 addresses as a guest does, `wanted` saying
/// each address and its subnet's mode: SLAAC ones appear from router
/// advertisements (waited for); a stateless subnet's DNS servers and a
/// stateful one's address come from DHCPv6.
pub fn ipv6(
    namespace: &str,
    dir: &Path,
    wanted: &[(Ipv6Addr, Ipv6Mode)],
) -> Result<Vec<Ipv6Lease>, LabError> {
    let mut leases = Vec::new();
    if wanted.is_empty() {
        return Ok(leases);
    }
    wait_for(
        namespace,
        "its link-local address",
        &["scope", "link"],
        None,
    )?;
    for (address, mode) in wanted {
        let lease = match mode {
            Ipv6Mode::Slaac | Ipv6Mode::Dhcpv6Stateless => {
                wait_for(
                    namespace,
                    "a SLAAC address",
                    &["scope", "global"],
                    Some(*address),
                )?;
                let dns = match mode {
                    Ipv6Mode::Dhcpv6Stateless => dhclient6(namespace, dir, true)?.1,
                    _ => String::new(),
                };
                Ipv6Lease {
                    address: address.to_string(),
                    by: "SLAAC".into(),
                    dns,
                }
            }
            Ipv6Mode::Dhcpv6Stateful => {
                let (got, dns) = dhclient6(namespace, dir, false)?;
                Ipv6Lease {
                    address: got,
                    by: "DHCPv6".into(),
                    dns,
                }
            }
        };
        leases.push(lease);
    }
    Ok(leases)
}

/// Waits until the guest interface has an IPv6 address of `scope` (that
/// one, when given) past duplicate address detection.
fn wait_for(
    namespace: &str,
    what: &str,
    scope: &[&str],
    address: Option<Ipv6Addr>,
) -> Result<(), LabError> {
    let deadline = Instant::now() + IPV6_PATIENCE;
    loop {
        let output = netns::command(namespace, "ip")
            .map_err(|e| LabError::io(format!("entering {namespace}"), e))?
            .args(["-6", "-o", "addr", "show", "dev", GUEST_INTERFACE])
            .args(scope)
            .output()
            .map_err(|e| LabError::io("running ip".into(), e))?;
        let text = String::from_utf8_lossy(&output.stdout);
        let done = text.lines().any(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let ours = words.windows(2).any(|w| {
                w[0] == "inet6"
                    && address
                        .is_none_or(|a| w[1].split('/').next() == Some(a.to_string().as_str()))
            });
            ours && !words.contains(&"tentative")
        });
        if done {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(LabError::Setup(format!(
                "no {what}{} in {namespace} within {}s: {}",
                address.map_or(String::new(), |a| format!(" ({a})")),
                IPV6_PATIENCE.as_secs(),
                text.trim()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs the DHCPv6 client once on the guest interface: information only
/// (`stateless`) or for an address. Returns the address and DNS servers.
fn dhclient6(namespace: &str, dir: &Path, stateless: bool) -> Result<(String, String), LabError> {
    let (lease_file, pid_file) = (dir.join("lease6.json"), dir.join("dhclient6.pid"));
    let text = format!("#!/bin/sh\nLEASE_FILE='{}'{SCRIPT6}", lease_file.display());
    let script = write_script(dir, "dhclient6.sh", &text)?;
    let _ = std::fs::remove_file(&lease_file);
    let mut command = netns::command(namespace, "dhclient")
        .map_err(|e| LabError::io(format!("entering {namespace}"), e))?;
    command.args(["-6", "-1", "-pf"]).arg(&pid_file);
    command.arg("-lf").arg(dir.join("dhclient6.leases"));
    command.arg("-sf").arg(&script);
    if stateless {
        command.arg("-S");
    }
    // Once bound, dhclient stays in the background to renew: its output
    // goes nowhere, and it is stopped once the lease is read.
    let status = command
        .arg(GUEST_INTERFACE)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| LabError::io("running dhclient (is isc-dhcp-client installed?)".into(), e))?;
    if let Some(pid) = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|p| p.trim().parse().ok())
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let text = std::fs::read_to_string(&lease_file).map_err(|_| {
        LabError::Setup(format!(
            "no DHCPv6 {} in {namespace} (dhclient: {status})",
            if stateless { "answer" } else { "lease" }
        ))
    })?;
    let lease: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| LabError::Setup(format!("reading the DHCPv6 lease of {namespace}: {e}")))?;
    let field = |name: &str| lease[name].as_str().unwrap_or_default().trim().to_string();
    Ok((field("address"), field("dns")))
}
