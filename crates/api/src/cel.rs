//! CEL expressions shared by several kinds.
//!
//! The CIDR and IP functions need Kubernetes 1.31 or newer on the API server.

/// The integer value of a dotted IPv4 address held in the CEL string `s`.
fn ipv4_value(s: &str) -> String {
    (0..4)
        .map(|i| format!("int({s}.split('.')[{i}]) * {}", 1u64 << (8 * (3 - i))))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// `start <= end` for two IP address strings. CEL has no ordering on IP
/// values, so IPv4 is compared numerically octet by octet; IPv6 pools are
/// ordered by the controller's validation instead.
pub fn ip_range_ordered(start: &str, end: &str) -> String {
    format!(
        "!isIP({start}) || !isIP({end}) || ip({start}).family() != 4 || ip({end}).family() != 4 || {} <= {}",
        ipv4_value(start),
        ipv4_value(end)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_value_weights_octets() {
        assert_eq!(
            ipv4_value("a"),
            "int(a.split('.')[0]) * 16777216 + int(a.split('.')[1]) * 65536 + int(a.split('.')[2]) * 256 + int(a.split('.')[3]) * 1"
        );
    }
}
