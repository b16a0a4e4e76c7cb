//! Networks: type rules, segmentation ids and MTU.

use std::collections::BTreeMap;

use super::claims::{ClaimIndex, Segment};
use super::{NetworkState, Verdict, by_arrival};
use crate::allocate::mtu::max_mtu;
use crate::allocate::{SegmentBook, SegmentError};
use crate::problem::Problems;
use crate::{ClusterConfig, Key, Kind, ObjectId, Reason, Snapshot};
use neutrino_api::{Network, NetworkType};

const MAX_VNI: u32 = 16_777_215;
const MAX_VLAN: u32 = 4094;

/// The checks one network allows by itself (the CRD's CEL rules, repeated
/// for manifests that never passed an API server).
fn check_spec(network: &Network, config: &ClusterConfig, problems: &mut Problems) {
    let spec = &network.spec;
    match (spec.network_type, spec.segmentation_id) {
        (NetworkType::Vxlan, Some(id)) if !(1..=MAX_VNI).contains(&id) => problems.push(
            "spec.segmentationID",
            Reason::InvalidSpec,
            format!("VNI {id} is not between 1 and {MAX_VNI}"),
        ),
        (NetworkType::Vlan, Some(id)) if !(1..=MAX_VLAN).contains(&id) => problems.push(
            "spec.segmentationID",
            Reason::InvalidSpec,
            format!("VLAN id {id} is not between 1 and {MAX_VLAN}"),
        ),
        (NetworkType::Local | NetworkType::Flat, Some(_)) => problems.push(
            "spec.segmentationID",
            Reason::InvalidSpec,
            format!("a {} network has no segmentation id", spec.network_type),
        ),
        _ => {}
    }
    match (
        &spec.physical_network,
        spec.network_type.needs_physical_network(),
    ) {
        (None, true) => problems.push(
            "spec.physicalNetwork",
            Reason::InvalidSpec,
            format!("a {} network needs a physicalNetwork", spec.network_type),
        ),
        (Some(_), false) => problems.push(
            "spec.physicalNetwork",
            Reason::InvalidSpec,
            format!("a {} network has no physicalNetwork", spec.network_type),
        ),
        (Some(physnet), true) if !config.physical_networks.contains_key(physnet) => {
            let known: Vec<&str> = config
                .physical_networks
                .keys()
                .map(String::as_str)
                .collect();
            problems.push(
                "spec.physicalNetwork",
                Reason::NotFound,
                format!(
                    "physical network {physnet} is not configured (known: {})",
                    known.join(", ")
                ),
            )
        }
        _ => {}
    }
}

fn segment_problem(problems: &mut Problems, error: SegmentError) {
    let (field, reason) = match error {
        SegmentError::Taken { .. } => ("spec.segmentationID", Reason::InUse),
        SegmentError::OutOfRange { .. } => ("spec.segmentationID", Reason::OutOfRange),
        SegmentError::Exhausted { .. } => ("spec.segmentationID", Reason::Exhausted),
        SegmentError::FlatTaken { .. } => ("spec.physicalNetwork", Reason::InUse),
    };
    let what = match error {
        SegmentError::FlatTaken { .. } => String::new(),
        _ => "segmentationID ".into(),
    };
    problems.push(field, reason, format!("{what}{error}"));
}

/// Checks every network and gives each its segment and MTU.
pub fn resolve(
    snapshot: &Snapshot,
    config: &ClusterConfig,
    claims: &ClaimIndex,
) -> BTreeMap<Key, Verdict<NetworkState>> {
    let mut book = SegmentBook::default();
    // A claimed segment is its holder's, whatever else asks for it.
    for (segment, holder) in &claims.segments {
        match segment {
            Segment::Vxlan(vni) => book.hold_vni(*vni, holder),
            Segment::Vlan(physnet, id) => book.hold_vlan(physnet, *id, holder),
            Segment::Flat(physnet) => book.hold_flat(physnet, holder),
        }
    }
    let claimed_id = |key: &Key| match claims.segment_of(key)? {
        Segment::Vxlan(id) | Segment::Vlan(_, id) => Some(*id),
        Segment::Flat(_) => None,
    };
    let mut verdicts = BTreeMap::new();
    let order = by_arrival(&snapshot.networks);
    // Networks that already have an id (asked for, claimed or recorded) go
    // first, so an allocation never takes an id someone asked for.
    let (fixed, open): (Vec<&Key>, Vec<&Key>) = order.into_iter().partition(|k| {
        let n = &snapshot.networks[*k];
        n.spec.segmentation_id.is_some()
            || claimed_id(k).is_some()
            || n.status.as_ref().and_then(|s| s.segmentation_id).is_some()
    });
    for key in fixed.into_iter().chain(open) {
        let network = &snapshot.networks[key];
        let mut problems = Problems::new(ObjectId::new(Kind::Network, key.clone()));
        check_spec(network, config, &mut problems);
        let spec = &network.spec;
        let physnet = spec.physical_network.as_deref();
        let max = max_mtu(spec.network_type, physnet, config);
        let mtu = spec.mtu.unwrap_or(max);
        if mtu > max {
            problems.push(
                "spec.mtu",
                Reason::OutOfRange,
                format!(
                    "mtu {mtu} exceeds {max}, the most a {} network carries here",
                    spec.network_type
                ),
            );
        }
        if !problems.is_empty() {
            verdicts.insert(key.clone(), Err(problems.into_vec()));
            continue;
        }
        let wanted = spec
            .segmentation_id
            .or_else(|| claimed_id(key))
            .or_else(|| network.status.as_ref().and_then(|s| s.segmentation_id));
        let segment = match (spec.network_type, physnet) {
            (NetworkType::Vxlan, _) => book.vni(&config.vni_ranges, wanted, key).map(Some),
            (NetworkType::Vlan, Some(p)) => {
                let ranges = &config.physical_networks[p].vlan_ranges;
                book.vlan(p, ranges, wanted, key).map(Some)
            }
            (NetworkType::Flat, Some(p)) => book.flat(p, key).map(|()| None),
            _ => Ok(None),
        };
        let verdict = match segment {
            Ok(segmentation_id) => problems.finish(NetworkState {
                network_type: spec.network_type,
                segmentation_id,
                physical_network: spec.physical_network.clone(),
                mtu,
                external: spec.external,
            }),
            Err(error) => {
                segment_problem(&mut problems, error);
                Err(problems.into_vec())
            }
        };
        verdicts.insert(key.clone(), verdict);
    }
    verdicts
}
