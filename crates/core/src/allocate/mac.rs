//! MAC addresses: parsed, printed, and derived stably from an identity.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// An Ethernet MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

/// The first two octets of every MAC neutrino derives: locally administered
/// (bit 1 set), unicast (bit 0 clear), then `n`.
const PREFIX: [u8; 2] = [0x02, 0x6e];

impl Mac {
    pub const ZERO: Mac = Mac([0; 6]);

    /// A locally administered unicast MAC derived from `identity`; `attempt`
    /// picks another one when an earlier attempt is taken.
    pub fn derive(identity: &str, attempt: u32) -> Mac {
        let digest = Sha256::new()
            .chain_update(identity.as_bytes())
            .chain_update(attempt.to_be_bytes())
            .finalize();
        Mac([
            PREFIX[0], PREFIX[1], digest[0], digest[1], digest[2], digest[3],
        ])
    }

    pub fn is_unicast(&self) -> bool {
        self.0[0] & 1 == 0
    }

    /// The modified EUI-64 interface identifier (RFC 4291): the MAC with
    /// its universal/local bit flipped and ff:fe in the middle.
    pub fn interface_id(&self) -> [u8; 8] {
        let m = self.0;
        [m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]]
    }

    /// The address SLAAC makes from `prefix` (a /64) and this MAC.
    pub fn eui64_in(&self, prefix: std::net::Ipv6Addr) -> std::net::Ipv6Addr {
        let mut octets = prefix.octets();
        octets[8..].copy_from_slice(&self.interface_id());
        octets.into()
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// A string that is not `xx:xx:xx:xx:xx:xx`.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a MAC address such as fa:16:3e:00:00:01")]
pub struct BadMac(String);

impl FromStr for Mac {
    type Err = BadMac;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut bytes {
            let part = parts
                .next()
                .filter(|p| p.len() == 2)
                .ok_or_else(|| BadMac(s.into()))?;
            *byte = u8::from_str_radix(part, 16).map_err(|_| BadMac(s.into()))?;
        }
        if parts.next().is_some() {
            return Err(BadMac(s.into()));
        }
        Ok(Mac(bytes))
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_macs_are_stable_local_unicast() {
        let mac = Mac::derive("tenant-a/web-1", 0);
        assert_eq!(mac, Mac::derive("tenant-a/web-1", 0));
        assert_ne!(mac, Mac::derive("tenant-a/web-1", 1));
        assert_eq!(mac.0[0] & 0b11, 0b10, "locally administered unicast");
        assert_eq!(mac.to_string().parse::<Mac>().unwrap(), mac);
    }

    #[test]
    fn malformed_macs_are_refused() {
        for bad in [
            "",
            "fa:16:3e:00:00",
            "fa:16:3e:00:00:01:02",
            "fa:16:3e:00:00:zz",
            "fa163e000001",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
        assert!("FA:16:3E:00:00:01".parse::<Mac>().is_ok());
    }
}
