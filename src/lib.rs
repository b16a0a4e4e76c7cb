pub mod api;
pub mod core;
pub mod manifest;
