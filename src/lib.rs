//! neutrino's crates under one name, for the binary, the tests and the
//! benchmark: `neutrino::core::…` is `neutrino_core::…`. The layers are
//! crates so that the compiler keeps the arrows pointing one way:
//! api ← core ← dataplane ← k8s, lab; manifest reads files into core's
//! values; cni is the plugin's protocol, which k8s serves.

#![forbid(unsafe_code)]

pub use neutrino_api as api;
pub use neutrino_cni as cni;
pub use neutrino_core as core;
pub use neutrino_dataplane as dataplane;
pub use neutrino_k8s as k8s;
pub use neutrino_lab as lab;
pub use neutrino_manifest as manifest;
