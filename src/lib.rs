pub mod api;
pub mod core;
pub mod dataplane;
pub mod k8s;
pub mod lab;
pub mod manifest;
