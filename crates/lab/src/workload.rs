//! Workloads: for every bound port, a namespace that stands for the VM or
//! pod. The port's veth end moves in as `eth0` and takes its address the
//! way a guest does, from a real DHCP client (busybox udhcpc).

use netlink_packet_route::link::LinkAttribute;
use rtnetlink::LinkUnspec;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Stdio;

use super::LabError;
use super::state::Lease;
use neutrino_dataplane::netlink::Netlink;
use neutrino_dataplane::netns;

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

/// Moves the port's veth end from the node into the workload's namespace
/// as `eth0` and brings it and loopback up.
pub async fn plug(node_namespace: &str, peer: &str, namespace: &str) -> Result<(), LabError> {
    netns::create(namespace)
        .map_err(|e| LabError::io(format!("creating namespace {namespace}"), e))?;
    let node = Netlink::connect(Some(node_namespace)).await?;
    let index = node
        .require(peer, "moving a port into its workload")
        .await?;
    let target = netns::open(namespace)
        .map_err(|e| LabError::io(format!("opening namespace {namespace}"), e))?;
    let mut message = LinkUnspec::new_with_index(index)
        .setns_by_fd(target.as_raw_fd())
        .build();
    message
        .attributes
        .push(LinkAttribute::IfName(GUEST_INTERFACE.into()));
    node.handle()
        .link()
        .set(message)
        .execute()
        .await
        .map_err(|cause| neutrino_dataplane::netlink::NetlinkError::Request {
            what: format!("moving {peer} into {namespace}"),
            cause,
        })?;
    drop(target);
    let inside = Netlink::connect(Some(namespace)).await?;
    inside.ensure_up("lo").await?;
    inside.ensure_up(GUEST_INTERFACE).await?;
    Ok(())
}

/// Whether the workload's namespace has its `eth0`.
pub async fn is_plugged(namespace: &str) -> bool {
    if !netns::exists(namespace) {
        return false;
    }
    match Netlink::connect(Some(namespace)).await {
        Ok(inside) => matches!(inside.index(GUEST_INTERFACE).await, Ok(Some(_))),
        Err(_) => false,
    }
}

/// Runs the DHCP client once in the workload and returns the lease.
pub fn dhcp(namespace: &str, dir: &Path) -> Result<Lease, LabError> {
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
            GUEST_INTERFACE,
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
