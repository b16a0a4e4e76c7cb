//! Workloads: for every bound port, a namespace that stands for the VM or
//! pod. The port's veth end moves in as `eth0` (`dataplane::workload`, as
//! a CNI plugin would move it) and takes its address the way a guest does,
//! from a real DHCP client (busybox udhcpc).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::LabError;
use super::state::Lease;
use neutrino_dataplane::netlink::NetlinkError;
use neutrino_dataplane::workload::PlugError;
use neutrino_dataplane::{netns, workload};

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

/// Runs the DHCP client once in the workload and returns the lease.
pub fn dhcp(namespace: &str, dir: &Path) -> Result<Lease, LabError> {
    dhcp_on(namespace, GUEST_INTERFACE, dir)
}

/// Runs the DHCP client once on `interface` of the namespace `namespace`
/// (a name, or a runtime's path) and returns the lease; its files go in
/// `dir`.
pub fn dhcp_on(namespace: &str, interface: &str, dir: &Path) -> Result<Lease, LabError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
    let script = dir.join("udhcpc.sh");
    std::fs::write(&script, SCRIPT)
        .map_err(|e| LabError::io("writing the DHCP client script".into(), e))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| LabError::io("writing the DHCP client script".into(), e))?;
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
