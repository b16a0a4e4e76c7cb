//! Segmentation ids: VXLAN VNIs cluster-wide, VLAN ids per physical network,
//! and at most one flat network per physical network.

use std::collections::BTreeMap;

use crate::Key;
use crate::config::IdRange;

/// Why a segment cannot be had.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    #[error("{id} is already used by network {holder}")]
    Taken { id: u32, holder: Key },
    #[error("{id} is outside the configured ranges {ranges}")]
    OutOfRange { id: u32, ranges: String },
    #[error("no id is left in the configured ranges {ranges}")]
    Exhausted { ranges: String },
    #[error("physical network {physnet} already carries the flat network {holder}")]
    FlatTaken { physnet: String, holder: Key },
}

/// Which segments are taken, and by whom.
#[derive(Debug, Default)]
pub struct SegmentBook {
    vnis: BTreeMap<u32, Key>,
    vlans: BTreeMap<String, BTreeMap<u32, Key>>,
    flat: BTreeMap<String, Key>,
}

fn describe(ranges: &[IdRange]) -> String {
    if ranges.is_empty() {
        return "(none configured)".into();
    }
    ranges
        .iter()
        .map(|r| format!("{}-{}", r.min, r.max))
        .collect::<Vec<_>>()
        .join(", ")
}

fn claim(
    taken: &mut BTreeMap<u32, Key>,
    ranges: &[IdRange],
    id: u32,
    holder: &Key,
) -> Result<u32, SegmentError> {
    if !ranges.iter().any(|r| r.contains(id)) {
        return Err(SegmentError::OutOfRange {
            id,
            ranges: describe(ranges),
        });
    }
    match taken.get(&id) {
        Some(other) if other != holder => Err(SegmentError::Taken {
            id,
            holder: other.clone(),
        }),
        _ => {
            taken.insert(id, holder.clone());
            Ok(id)
        }
    }
}

fn allocate(
    taken: &mut BTreeMap<u32, Key>,
    ranges: &[IdRange],
    holder: &Key,
) -> Result<u32, SegmentError> {
    for range in ranges {
        let mut candidate = range.min;
        for &used in taken.range(range.min..=range.max).map(|(id, _)| id) {
            if used != candidate {
                break;
            }
            candidate += 1;
        }
        if candidate <= range.max {
            taken.insert(candidate, holder.clone());
            return Ok(candidate);
        }
    }
    Err(SegmentError::Exhausted {
        ranges: describe(ranges),
    })
}

impl SegmentBook {
    /// Records a VNI as held, as a claim on the cluster says; the first
    /// holder recorded keeps it.
    pub fn hold_vni(&mut self, id: u32, holder: &Key) {
        self.vnis.entry(id).or_insert_with(|| holder.clone());
    }

    /// Records a VLAN id on `physnet` as held.
    pub fn hold_vlan(&mut self, physnet: &str, id: u32, holder: &Key) {
        self.vlans
            .entry(physnet.to_string())
            .or_default()
            .entry(id)
            .or_insert_with(|| holder.clone());
    }

    /// Records `physnet`'s flat network as held.
    pub fn hold_flat(&mut self, physnet: &str, holder: &Key) {
        self.flat
            .entry(physnet.to_string())
            .or_insert_with(|| holder.clone());
    }

    /// Takes `id` as a VNI for `holder`, or the lowest free VNI when `None`.
    pub fn vni(
        &mut self,
        ranges: &[IdRange],
        id: Option<u32>,
        holder: &Key,
    ) -> Result<u32, SegmentError> {
        match id {
            Some(id) => claim(&mut self.vnis, ranges, id, holder),
            None => allocate(&mut self.vnis, ranges, holder),
        }
    }

    /// Takes `id` as a VLAN id on `physnet`, or the lowest free one when `None`.
    pub fn vlan(
        &mut self,
        physnet: &str,
        ranges: &[IdRange],
        id: Option<u32>,
        holder: &Key,
    ) -> Result<u32, SegmentError> {
        let taken = self.vlans.entry(physnet.to_string()).or_default();
        match id {
            Some(id) => claim(taken, ranges, id, holder),
            None => allocate(taken, ranges, holder),
        }
    }

    /// Takes `physnet` for a flat network.
    pub fn flat(&mut self, physnet: &str, holder: &Key) -> Result<(), SegmentError> {
        match self.flat.get(physnet) {
            Some(other) if other != holder => Err(SegmentError::FlatTaken {
                physnet: physnet.into(),
                holder: other.clone(),
            }),
            _ => {
                self.flat.insert(physnet.into(), holder.clone());
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        Key::new("t", name)
    }

    #[test]
    fn lowest_free_vni_skips_taken_ones() {
        let ranges = [IdRange { min: 10, max: 12 }, IdRange { min: 20, max: 20 }];
        let mut book = SegmentBook::default();
        assert_eq!(book.vni(&ranges, Some(11), &key("a")), Ok(11));
        assert_eq!(book.vni(&ranges, None, &key("b")), Ok(10));
        assert_eq!(book.vni(&ranges, None, &key("c")), Ok(12));
        assert_eq!(book.vni(&ranges, None, &key("d")), Ok(20));
        assert!(matches!(
            book.vni(&ranges, None, &key("e")),
            Err(SegmentError::Exhausted { .. })
        ));
        assert!(matches!(
            book.vni(&ranges, Some(11), &key("f")),
            Err(SegmentError::Taken { id: 11, .. })
        ));
        assert!(matches!(
            book.vni(&ranges, Some(15), &key("f")),
            Err(SegmentError::OutOfRange { id: 15, .. })
        ));
    }

    #[test]
    fn vlan_ids_are_per_physical_network() {
        let ranges = [IdRange { min: 100, max: 101 }];
        let mut book = SegmentBook::default();
        assert_eq!(book.vlan("a", &ranges, Some(100), &key("x")), Ok(100));
        assert_eq!(book.vlan("b", &ranges, Some(100), &key("y")), Ok(100));
        assert_eq!(book.vlan("a", &ranges, None, &key("z")), Ok(101));
        assert!(book.flat("a", &key("f")).is_ok());
        assert!(matches!(
            book.flat("a", &key("g")),
            Err(SegmentError::FlatTaken { .. })
        ));
    }
}
