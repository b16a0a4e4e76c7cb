//! The one pass that hands out addresses to every kind, in a fixed order:
//! addresses already recorded in status, then explicitly requested ones,
//! then the DHCP servers', then everything else from the pools.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::claims::ClaimIndex;
use super::{Arrival, SubnetState, Verdict};
use crate::allocate::{AddressBook, ClaimError, Holder};
use crate::problem::Problems;
use crate::{Key, Reason};

/// Which address a request wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wanted {
    /// This address, on the first candidate subnet. `recorded` when it comes
    /// from status rather than spec.
    Exact { address: IpAddr, recorded: bool },
    /// The lowest free address of the first candidate subnet that has one.
    Any,
}

/// One address some object needs.
#[derive(Clone, Debug)]
pub struct Request {
    pub holder: Holder,
    /// Which of the holder's addresses this is (its index in the spec).
    pub slot: usize,
    /// Candidate subnets, in order of preference; never empty.
    pub subnets: Vec<Key>,
    pub wanted: Wanted,
    pub arrival: Arrival,
}

impl Request {
    fn stage(&self) -> u8 {
        match (&self.wanted, &self.holder) {
            (Wanted::Exact { recorded: true, .. }, _) => 0,
            (
                Wanted::Exact {
                    recorded: false, ..
                },
                _,
            ) => 1,
            (Wanted::Any, Holder::Dhcp(_)) => 2,
            (Wanted::Any, _) => 3,
        }
    }
}

/// The book after every request, and each request's outcome.
pub struct Addresses {
    pub book: AddressBook,
    outcomes: BTreeMap<(Holder, usize), Result<(Key, IpAddr), ClaimError>>,
}

impl Addresses {
    /// The outcome of the holder's request in `slot`.
    pub fn outcome(
        &self,
        holder: &Holder,
        slot: usize,
    ) -> Option<&Result<(Key, IpAddr), ClaimError>> {
        self.outcomes.get(&(holder.clone(), slot))
    }
}

/// Serves every request against the subnets that are ready.
pub fn run(
    subnets: &BTreeMap<Key, Verdict<SubnetState>>,
    requests: &[Request],
    claims: &ClaimIndex,
) -> Addresses {
    let mut book = AddressBook::default();
    for (key, subnet) in subnets
        .iter()
        .filter_map(|(k, v)| Some((k, v.as_ref().ok()?)))
    {
        book.add_subnet(key, subnet.cidr, &subnet.pools, subnet.gateway);
    }
    // A claimed address is its holder's before any request is served.
    for (subnet, address, holder) in &claims.addresses {
        if book.has_subnet(subnet) {
            let _ = book.claim(subnet, *address, holder);
        }
    }
    let mut order: Vec<&Request> = requests.iter().collect();
    order.sort_by(|a, b| (a.stage(), &a.arrival, a.slot).cmp(&(b.stage(), &b.arrival, b.slot)));

    let mut outcomes = BTreeMap::new();
    for request in order {
        let outcome = match request.wanted {
            Wanted::Exact { address, .. } => {
                let subnet = &request.subnets[0];
                book.claim(subnet, address, &request.holder)
                    .map(|a| (subnet.clone(), a))
            }
            Wanted::Any => {
                let mut last = None;
                let mut found = None;
                for subnet in &request.subnets {
                    match book.allocate(subnet, &request.holder) {
                        Ok(address) => {
                            found = Some((subnet.clone(), address));
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                found.ok_or_else(|| last.expect("a request names at least one subnet"))
            }
        };
        outcomes.insert((request.holder.clone(), request.slot), outcome);
    }
    Addresses { book, outcomes }
}

/// Records why a request failed against the field that made it.
pub fn claim_problem(problems: &mut Problems, field: &str, error: &ClaimError) {
    let reason = match error {
        ClaimError::Taken { .. } => Reason::InUse,
        ClaimError::Exhausted { .. } => Reason::Exhausted,
        ClaimError::Outside { .. } => Reason::OutOfRange,
        ClaimError::Reserved { .. } => Reason::InvalidSpec,
    };
    problems.push(field, reason, error.to_string());
}
