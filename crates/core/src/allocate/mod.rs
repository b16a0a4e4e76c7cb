//! Allocation of what must be unique: segmentation ids, addresses, MACs,
//! and the MTU that follows from the underlay. Each allocator is a value
//! that knows what is taken and hands out the lowest free item, so a replay
//! over the same inputs gives the same result.

pub mod ipam;
pub mod mac;
pub mod mtu;
pub mod segments;

pub use ipam::{AddressBook, ClaimError, Holder, claim_name};
pub use mac::Mac;
pub use segments::{SegmentBook, SegmentError};
