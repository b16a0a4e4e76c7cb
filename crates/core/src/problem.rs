//! Why an object is not ready: the reason, the field and the conflict.

use serde::Serialize;

use super::ObjectId;

/// The `reason` of a `Ready=False` condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Reason {
    /// A field is malformed or contradicts another field of the same object.
    InvalidSpec,
    /// A referenced object does not exist.
    NotFound,
    /// A referenced object lives in another namespace and may not be used from here.
    OtherNamespace,
    /// A referenced object exists but is not ready itself.
    DependencyNotReady,
    /// Two address ranges overlap where they must not.
    Overlap,
    /// An address or id lies outside the range it must come from.
    OutOfRange,
    /// An address, id or MAC is already held by another object.
    InUse,
    /// No address or id is left to allocate.
    Exhausted,
    /// A network used as an external one is not marked `external`.
    NotExternal,
    /// A node named by the object is not known.
    UnknownNode,
    /// No router joins the subnets the object needs joined.
    Unreachable,
}

impl Reason {
    /// The CamelCase form used as a condition reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidSpec => "InvalidSpec",
            Self::NotFound => "NotFound",
            Self::OtherNamespace => "OtherNamespace",
            Self::DependencyNotReady => "DependencyNotReady",
            Self::Overlap => "Overlap",
            Self::OutOfRange => "OutOfRange",
            Self::InUse => "InUse",
            Self::Exhausted => "Exhausted",
            Self::NotExternal => "NotExternal",
            Self::UnknownNode => "UnknownNode",
            Self::Unreachable => "Unreachable",
        }
    }
}

/// One thing that keeps an object from being ready.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{object}: {field}: {message}")]
pub struct Problem {
    pub object: ObjectId,
    /// The offending field as a path, for example `spec.fixedIPs[0].ipAddress`.
    pub field: String,
    pub reason: Reason,
    pub message: String,
}

impl Problem {
    pub fn new(
        object: &ObjectId,
        field: impl Into<String>,
        reason: Reason,
        message: impl Into<String>,
    ) -> Self {
        Self {
            object: object.clone(),
            field: field.into(),
            reason,
            message: message.into(),
        }
    }
}

/// Collects the problems of one object while it is being checked.
#[derive(Debug)]
pub struct Problems {
    object: ObjectId,
    found: Vec<Problem>,
}

impl Problems {
    pub fn new(object: ObjectId) -> Self {
        Self {
            object,
            found: Vec::new(),
        }
    }

    pub fn object(&self) -> &ObjectId {
        &self.object
    }

    pub fn push(&mut self, field: impl Into<String>, reason: Reason, message: impl Into<String>) {
        self.found
            .push(Problem::new(&self.object, field, reason, message));
    }

    /// Records a problem found on this object's behalf (by a lookup, say).
    pub fn add(&mut self, problem: Problem) {
        debug_assert_eq!(problem.object, self.object);
        self.found.push(problem);
    }

    pub fn len(&self) -> usize {
        self.found.len()
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// `Ok(value)` when nothing was found, else every problem.
    pub fn finish<T>(self, value: T) -> Result<T, Vec<Problem>> {
        if self.found.is_empty() {
            Ok(value)
        } else {
            Err(self.found)
        }
    }

    pub fn into_vec(self) -> Vec<Problem> {
        self.found
    }
}
