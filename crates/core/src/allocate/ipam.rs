//! IP address management: which addresses of which subnet are taken, by whom.
//!
//! On a cluster every address is claimed by creating an object named by
//! [`claim_name`]; the API server refuses a second object of that name, so
//! two writers can never hold the same address. This book is the pure
//! counterpart: the same lowest-free choice, computed over values.

use ipnet::IpNet;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{Key, Kind, ObjectId};

/// Who holds an address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Holder {
    /// The subnet's own gateway address.
    Gateway(Key),
    /// The nodes' DHCP servers of a subnet.
    Dhcp(Key),
    Port(Key),
    /// A router's address on an external network.
    RouterGateway(Key),
    FloatingIP(Key),
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Gateway(k) => write!(f, "the gateway of subnet {k}"),
            Self::Dhcp(k) => write!(f, "the DHCP server of subnet {k}"),
            Self::Port(k) => write!(f, "port {k}"),
            Self::RouterGateway(k) => write!(f, "the external gateway of router {k}"),
            Self::FloatingIP(k) => write!(f, "floating IP {k}"),
        }
    }
}

impl Holder {
    /// The object that holds the address.
    pub fn object(&self) -> ObjectId {
        let (kind, key) = match self {
            Self::Gateway(k) | Self::Dhcp(k) => (Kind::Subnet, k),
            Self::Port(k) => (Kind::Port, k),
            Self::RouterGateway(k) => (Kind::Router, k),
            Self::FloatingIP(k) => (Kind::FloatingIP, k),
        };
        ObjectId::new(kind, key.clone())
    }

    /// The holder an object is when it holds a claim: a subnet claims only
    /// its DHCP server's address (its gateway's is never claimed), and
    /// networks and security groups hold no addresses.
    pub fn claimed_by(id: ObjectId) -> Option<Holder> {
        match id.kind {
            Kind::Subnet => Some(Self::Dhcp(id.key)),
            Kind::Port => Some(Self::Port(id.key)),
            Kind::Router => Some(Self::RouterGateway(id.key)),
            Kind::FloatingIP => Some(Self::FloatingIP(id.key)),
            Kind::Network | Kind::SecurityGroup => None,
        }
    }

    /// Whether a claim can hold it.
    pub fn claimable(&self) -> bool {
        !matches!(self, Self::Gateway(_))
    }
}

/// Why an address cannot be had.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("{address} is outside {cidr}")]
    Outside { address: IpAddr, cidr: IpNet },
    #[error("{address} is the network or broadcast address of {cidr}")]
    Reserved { address: IpAddr, cidr: IpNet },
    #[error("{address} is already held by {holder}")]
    Taken { address: IpAddr, holder: Holder },
    #[error("no address is left in the allocation pools of {cidr}")]
    Exhausted { cidr: IpNet },
}

/// The name of the object that claims `address` on `subnet` in a cluster.
/// One name per address: dotted IPv4, or the 32 hex digits of an IPv6
/// address, so that no two spellings of one address can both be created.
pub fn claim_name(subnet: &str, address: IpAddr) -> String {
    match address {
        IpAddr::V4(a) => format!("{subnet}.{a}"),
        IpAddr::V6(a) => format!("{subnet}.{:032x}", u128::from(a)),
    }
}

fn to_u128(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(a) => u32::from(a).into(),
        IpAddr::V6(a) => a.into(),
    }
}

fn from_u128(value: u128, like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(value as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(value)),
    }
}

/// An inclusive address range, in numeric form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Range {
    start: u128,
    end: u128,
}

/// The pools a subnet allocates from when it names none: every host address
/// (IPv4 less network and broadcast; IPv6 less the subnet-router anycast).
pub fn default_pool(cidr: IpNet) -> (IpAddr, IpAddr) {
    let first = to_u128(cidr.network()) + 1;
    let last = match cidr {
        IpNet::V4(_) => to_u128(cidr.broadcast()) - 1,
        IpNet::V6(_) => to_u128(cidr.broadcast()),
    };
    (from_u128(first, cidr.addr()), from_u128(last, cidr.addr()))
}

#[derive(Debug)]
struct SubnetBook {
    cidr: IpNet,
    pools: Vec<Range>,
    taken: BTreeMap<u128, Holder>,
}

impl SubnetBook {
    fn is_reserved(&self, value: u128) -> bool {
        matches!(self.cidr, IpNet::V4(_))
            && self.cidr.prefix_len() < 31
            && (value == to_u128(self.cidr.network()) || value == to_u128(self.cidr.broadcast()))
    }
}

/// Which addresses are taken on every subnet.
#[derive(Debug, Default)]
pub struct AddressBook {
    subnets: BTreeMap<Key, SubnetBook>,
}

impl AddressBook {
    /// Registers a subnet with its pools (each `start <= end`, inside `cidr`)
    /// and its gateway, which is held from then on.
    pub fn add_subnet(
        &mut self,
        key: &Key,
        cidr: IpNet,
        pools: &[(IpAddr, IpAddr)],
        gateway: Option<IpAddr>,
    ) {
        let mut book = SubnetBook {
            cidr,
            pools: pools
                .iter()
                .map(|&(s, e)| Range {
                    start: to_u128(s),
                    end: to_u128(e),
                })
                .collect(),
            taken: BTreeMap::new(),
        };
        book.pools.sort_by_key(|r| r.start);
        if let Some(gateway) = gateway {
            book.taken
                .insert(to_u128(gateway), Holder::Gateway(key.clone()));
        }
        self.subnets.insert(key.clone(), book);
    }

    pub fn has_subnet(&self, key: &Key) -> bool {
        self.subnets.contains_key(key)
    }

    fn book(&mut self, subnet: &Key) -> &mut SubnetBook {
        self.subnets
            .get_mut(subnet)
            .unwrap_or_else(|| panic!("subnet {subnet} was not registered before its addresses"))
    }

    /// Takes `address` on `subnet` for `holder`. A holder taking an address it
    /// already holds succeeds. Addresses outside the pools but inside the
    /// CIDR may be claimed, as in Neutron.
    pub fn claim(
        &mut self,
        subnet: &Key,
        address: IpAddr,
        holder: &Holder,
    ) -> Result<IpAddr, ClaimError> {
        let book = self.book(subnet);
        let cidr = book.cidr;
        if !cidr.contains(&address) {
            return Err(ClaimError::Outside { address, cidr });
        }
        let value = to_u128(address);
        if book.is_reserved(value) {
            return Err(ClaimError::Reserved { address, cidr });
        }
        match book.taken.get(&value) {
            Some(other) if other != holder => Err(ClaimError::Taken {
                address,
                holder: other.clone(),
            }),
            _ => {
                book.taken.insert(value, holder.clone());
                Ok(address)
            }
        }
    }

    /// Takes the lowest free address of `subnet`'s pools for `holder`.
    pub fn allocate(&mut self, subnet: &Key, holder: &Holder) -> Result<IpAddr, ClaimError> {
        let book = self.book(subnet);
        for pool in &book.pools {
            let mut candidate = pool.start;
            for &used in book.taken.range(pool.start..=pool.end).map(|(v, _)| v) {
                if used != candidate {
                    break;
                }
                candidate += 1;
            }
            if candidate <= pool.end {
                book.taken.insert(candidate, holder.clone());
                return Ok(from_u128(candidate, book.cidr.addr()));
            }
        }
        Err(ClaimError::Exhausted { cidr: book.cidr })
    }

    /// Who holds `address` on `subnet`.
    pub fn holder(&self, subnet: &Key, address: IpAddr) -> Option<&Holder> {
        self.subnets.get(subnet)?.taken.get(&to_u128(address))
    }

    /// Every address held on `subnet`, in address order.
    pub fn held(&self, subnet: &Key) -> impl Iterator<Item = (IpAddr, &Holder)> {
        self.subnets.get(subnet).into_iter().flat_map(|b| {
            b.taken
                .iter()
                .map(|(&v, h)| (from_u128(v, b.cidr.addr()), h))
        })
    }

    /// Addresses held on `subnet` (the gateway included) and addresses still
    /// free in its pools.
    pub fn usage(&self, subnet: &Key) -> (u128, u128) {
        let Some(book) = self.subnets.get(subnet) else {
            return (0, 0);
        };
        let size: u128 = book.pools.iter().map(|r| r.end - r.start + 1).sum();
        let in_pools = book
            .taken
            .keys()
            .filter(|&&v| book.pools.iter().any(|r| (r.start..=r.end).contains(&v)))
            .count() as u128;
        (book.taken.len() as u128, size.saturating_sub(in_pools))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet() -> Key {
        Key::new("t", "s")
    }

    fn book(cidr: &str, pools: &[(&str, &str)], gateway: Option<&str>) -> AddressBook {
        let mut book = AddressBook::default();
        let pools: Vec<_> = pools
            .iter()
            .map(|(s, e)| (s.parse().unwrap(), e.parse().unwrap()))
            .collect();
        book.add_subnet(
            &subnet(),
            cidr.parse().unwrap(),
            &pools,
            gateway.map(|g| g.parse().unwrap()),
        );
        book
    }

    fn port(name: &str) -> Holder {
        Holder::Port(Key::new("t", name))
    }

    #[test]
    fn claim_names_have_one_spelling_per_address() {
        assert_eq!(
            claim_name("blue-v4", "10.10.0.11".parse().unwrap()),
            "blue-v4.10.10.0.11"
        );
        assert_eq!(
            claim_name("blue-v6", "2001:db8::5".parse().unwrap()),
            "blue-v6.20010db8000000000000000000000005"
        );
    }

    #[test]
    fn allocates_lowest_free_address_around_the_gateway() {
        let mut b = book("10.0.0.0/29", &[("10.0.0.1", "10.0.0.6")], Some("10.0.0.1"));
        assert_eq!(
            b.claim(&subnet(), "10.0.0.3".parse().unwrap(), &port("a"))
                .unwrap()
                .to_string(),
            "10.0.0.3"
        );
        let got: Vec<String> = ["b", "c", "d", "e"]
            .iter()
            .map(|n| b.allocate(&subnet(), &port(n)).unwrap().to_string())
            .collect();
        assert_eq!(got, ["10.0.0.2", "10.0.0.4", "10.0.0.5", "10.0.0.6"]);
        assert!(matches!(
            b.allocate(&subnet(), &port("f")),
            Err(ClaimError::Exhausted { .. })
        ));
        assert_eq!(b.usage(&subnet()), (6, 0));
    }

    #[test]
    fn claims_refuse_conflicts_and_reserved_addresses() {
        let mut b = book(
            "10.0.0.0/24",
            &[("10.0.0.10", "10.0.0.20")],
            Some("10.0.0.1"),
        );
        let taken = b.claim(&subnet(), "10.0.0.1".parse().unwrap(), &port("a"));
        assert!(matches!(
            taken,
            Err(ClaimError::Taken {
                holder: Holder::Gateway(_),
                ..
            })
        ));
        assert!(matches!(
            b.claim(&subnet(), "10.0.0.255".parse().unwrap(), &port("a")),
            Err(ClaimError::Reserved { .. })
        ));
        assert!(matches!(
            b.claim(&subnet(), "10.0.1.1".parse().unwrap(), &port("a")),
            Err(ClaimError::Outside { .. })
        ));
        assert!(
            b.claim(&subnet(), "10.0.0.200".parse().unwrap(), &port("a"))
                .is_ok(),
            "outside the pools but inside the CIDR"
        );
        assert!(
            b.claim(&subnet(), "10.0.0.200".parse().unwrap(), &port("a"))
                .is_ok(),
            "idempotent for its holder"
        );
    }

    #[test]
    fn ipv6_pools_work_the_same() {
        let (start, end) = default_pool("2001:db8::/64".parse().unwrap());
        assert_eq!(
            (start.to_string(), end.to_string()),
            ("2001:db8::1".into(), "2001:db8::ffff:ffff:ffff:ffff".into())
        );
        let mut b = book(
            "2001:db8::/64",
            &[("2001:db8::1", "2001:db8::ffff:ffff:ffff:ffff")],
            Some("2001:db8::1"),
        );
        assert_eq!(
            b.allocate(&subnet(), &port("a")).unwrap().to_string(),
            "2001:db8::2"
        );
        assert_eq!(b.usage(&subnet()).1, (1u128 << 64) - 3);
    }
}
