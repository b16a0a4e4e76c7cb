//! The one way neutrino hashes several strings into a short, stable text:
//! SHA-256 over the parts, each followed by a NUL so that ("ab", "c") and
//! ("a", "bc") differ, shown as hex. (A MAC's derivation and a realised
//! digest hash their own fixed formats, which must never change.)

use sha2::{Digest, Sha256};

/// The first `bytes` bytes of the digest of `parts`, as hex.
pub fn hex<S: AsRef<str>>(parts: &[S], bytes: usize) -> String {
    let mut digest = Sha256::new();
    for part in parts {
        digest.update(part.as_ref().as_bytes());
        digest.update([0]);
    }
    digest
        .finalize()
        .iter()
        .take(bytes)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The first eight bytes of the digest of `parts`, as a number: for prints
/// kept by the thousand.
pub fn value<S: AsRef<str>>(parts: &[S]) -> u64 {
    let mut digest = Sha256::new();
    for part in parts {
        digest.update(part.as_ref().as_bytes());
        digest.update([0]);
    }
    let bytes: [u8; 8] = digest.finalize()[..8].try_into().expect("eight bytes");
    u64::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_kept_apart_and_the_length_is_asked_for() {
        assert_ne!(hex(&["ab", "c"], 8), hex(&["a", "bc"], 8));
        assert_eq!(hex(&["x"], 5).len(), 10);
        assert_eq!(hex(&["x"], 5), "14f825b2bb", "SHA-256 of \"x\\0\"");
        assert_eq!(hex(&["x"], 32).len(), 64);
        assert!(hex(&["x"], 32).starts_with(&hex(&["x"], 5)));
        assert_eq!(format!("{:016x}", value(&["x"])), hex(&["x"], 8));
    }
}
