pub mod api;
pub mod core;
pub mod dataplane;
pub mod lab;
pub mod manifest;
