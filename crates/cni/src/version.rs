//! The CNI versions the plugin speaks, and which shape of result each one
//! reads.

use crate::outcome::{CniError, Code};

/// Every version the plugin answers in, oldest first.
pub const SUPPORTED: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The result shapes the versions read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Shape {
    /// 0.3.0 to 0.4.0: each IP names its family in `version`.
    Zero,
    /// 1.0.0: no `version` on IPs.
    One,
    /// 1.1.0: interfaces may carry their MTU.
    OneOne,
}

/// The shape `version` reads; an error naming the versions spoken when it
/// is none of them.
pub fn shape(version: &str) -> Result<Shape, CniError> {
    match version {
        "0.3.0" | "0.3.1" | "0.4.0" => Ok(Shape::Zero),
        "1.0.0" => Ok(Shape::One),
        "1.1.0" => Ok(Shape::OneOne),
        _ => Err(CniError::new(
            Code::IncompatibleVersion,
            format!("CNI version {version:?} is not supported"),
            format!("supported versions: {}", SUPPORTED.join(", ")),
        )),
    }
}

/// What VERSION prints: the version asked in, and those spoken.
pub fn report(asked: &str) -> serde_json::Value {
    serde_json::json!({
        "cniVersion": asked,
        "supportedVersions": SUPPORTED,
    })
}

/// Whether the command `command` exists in `version`: CHECK since 0.4.0,
/// GC and STATUS since 1.1.0.
pub fn knows(version: &str, command: &str) -> bool {
    let since = match command {
        "CHECK" => "0.4.0",
        "GC" | "STATUS" => "1.1.0",
        _ => "0.3.0",
    };
    let index = |v: &str| SUPPORTED.iter().position(|s| *s == v);
    matches!((index(version), index(since)), (Some(v), Some(s)) if v >= s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_version_has_a_shape_and_others_are_refused_by_name() {
        for version in SUPPORTED {
            assert!(shape(version).is_ok(), "{version}");
        }
        let error = shape("2.0.0").unwrap_err();
        assert_eq!(error.code, Code::IncompatibleVersion as u32);
        assert!(error.msg.contains("\"2.0.0\""), "{}", error.msg);
        assert!(error.details.contains("1.1.0"), "{}", error.details);
    }

    #[test]
    fn newer_commands_exist_only_from_their_version() {
        assert!(!knows("0.3.1", "CHECK"));
        assert!(knows("0.4.0", "CHECK"));
        assert!(!knows("1.0.0", "GC"));
        assert!(knows("1.1.0", "STATUS"));
        assert!(knows("0.3.0", "ADD"));
        assert!(!knows("9.9.9", "ADD"));
    }
}
