//! The metadata service at 169.254.169.254: where each node listens, who
//! is calling, and what the caller is told.
//!
//! A node listens in each of its DHCP namespaces (reached through the host
//! route DHCP hands out) and on each internal leg of the routers it hosts.
//! The caller is the port that holds the request's source address on the
//! listener's network: port security drops frames from any other source,
//! so the address is as good as a name. A DHCP namespace answers only the
//! ports bound to its node; a router answers the ports behind it.

mod caller;
pub mod layout;

pub use caller::{Objects, Refusal, caller};
pub use layout::{Reply, reply};

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Secret;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::Key;
use crate::plan::NodePlan;

/// The service's well-known address.
pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// The port it answers on.
pub const PORT: u16 = 80;

/// The metadata address as a host route's destination.
pub fn host_route() -> IpNet {
    IpNet::new(ADDRESS.into(), 32).expect("32 is a valid prefix")
}

/// Which callers a listener answers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// The ports bound to this node: a DHCP namespace.
    Node(String),
    /// Every port on the network, wherever bound: a router's leg.
    Router(Key),
}

/// One socket of the service: in `namespace`, taking connections that
/// arrive on `interface` only, from ports of `network`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Listener {
    pub namespace: String,
    pub interface: String,
    pub network: Key,
    pub scope: Scope,
}

/// Where `plan`'s node listens: every DHCP server's interface and every
/// internal leg of its routers (never a gateway leg: the external network
/// must not reach it).
pub fn listeners(plan: &NodePlan) -> Vec<Listener> {
    let dhcp = plan
        .dhcp
        .iter()
        .filter(|d| d.cidr.addr().is_ipv4())
        .map(|d| Listener {
            namespace: d.namespace.clone(),
            interface: d.interface.clone(),
            network: d.network.clone(),
            scope: Scope::Node(plan.node.clone()),
        });
    let legs = plan.routers.iter().flat_map(|r| {
        (r.interfaces.iter())
            .filter(|leg| leg.address.addr().is_ipv4())
            .map(|leg| Listener {
                namespace: r.namespace.clone(),
                interface: leg.interface.clone(),
                network: leg.network.clone(),
                scope: Scope::Router(r.router.clone()),
            })
    });
    let mut all: Vec<Listener> = dhcp.chain(legs).collect();
    all.sort();
    all.dedup();
    all
}

/// One of a port's addresses, with what its subnet says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixedAddress {
    pub subnet: Key,
    pub ip: IpAddr,
    pub cidr: IpNet,
    /// Whether the subnet hands its addresses out by DHCP.
    pub dhcp: bool,
    /// IPv6: how the address is configured.
    pub ipv6_mode: Option<neutrino_api::Ipv6Mode>,
    pub gateway: Option<IpAddr>,
    pub dns: Vec<IpAddr>,
    pub routes: Vec<(IpNet, IpAddr)>,
}

/// What the service knows about one port's workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub port: Key,
    /// The Port's uid on a cluster; from its name otherwise.
    pub uuid: String,
    pub hostname: String,
    pub mac: String,
    pub mtu: Option<u32>,
    pub network: Key,
    pub node: Option<String>,
    pub addresses: Vec<FixedAddress>,
    pub floating_ips: Vec<IpAddr>,
    pub security_groups: Vec<String>,
    /// The Secret with its user data and keys, in the port's namespace.
    pub secret: Option<String>,
}

impl Instance {
    /// An EC2-style instance id, from the uuid.
    pub fn instance_id(&self) -> String {
        let hex: String = self.uuid.chars().filter(char::is_ascii_hexdigit).collect();
        format!("i-{}", &hex[..hex.len().min(17)])
    }
}

/// The data of a Secret as a workload would read it: `data` decoded, with
/// `stringData` over it, as the API server merges them (a Secret read
/// back from the API server has folded them already; one read from a
/// manifest has not).
pub fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = (secret.data.iter().flatten())
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        data.insert(k.clone(), v.clone().into_bytes());
    }
    data
}

/// What the port's Secret adds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extras {
    pub user_data: Option<Vec<u8>>,
    /// Public keys in `authorized_keys` form, one per entry.
    pub ssh_keys: Vec<String>,
}

/// The Secret keys the service reads.
pub const USER_DATA_KEYS: [&str; 2] = ["userData", "userdata"];
pub const SSH_KEYS_KEY: &str = "sshAuthorizedKeys";

impl Extras {
    /// From a Secret's data: `userData` (or `userdata`, as KubeVirt spells
    /// it) as it is, `sshAuthorizedKeys` one key per line, comments and
    /// blank lines left out.
    pub fn from_secret(data: &BTreeMap<String, Vec<u8>>) -> Self {
        let user_data = USER_DATA_KEYS.iter().find_map(|k| data.get(*k)).cloned();
        let ssh_keys = data
            .get(SSH_KEYS_KEY)
            .map(|keys| {
                String::from_utf8_lossy(keys)
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        Self {
            user_data,
            ssh_keys,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_gives_user_data_as_it_is_and_keys_line_by_line() {
        let data = BTreeMap::from([
            ("userdata".to_string(), b"#cloud-config\n".to_vec()),
            (
                SSH_KEYS_KEY.to_string(),
                b"# ops\nssh-ed25519 AAAA one\n\n  ssh-rsa BBBB two  \n".to_vec(),
            ),
            ("token".to_string(), b"never served".to_vec()),
        ]);
        let extras = Extras::from_secret(&data);
        assert_eq!(extras.user_data.as_deref(), Some(&b"#cloud-config\n"[..]));
        assert_eq!(
            extras.ssh_keys,
            ["ssh-ed25519 AAAA one", "ssh-rsa BBBB two"]
        );
        assert_eq!(Extras::from_secret(&BTreeMap::new()), Extras::default());
    }

    #[test]
    fn a_secrets_string_data_goes_over_its_data() {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "boot"},
            "data": {"userData": "b2xk", "sshAuthorizedKeys": "a2V5"},
            "stringData": {"userData": "new"},
        }))
        .unwrap();
        let data = secret_data(&secret);
        assert_eq!(data["userData"], b"new");
        assert_eq!(data["sshAuthorizedKeys"], b"key");
    }
}
