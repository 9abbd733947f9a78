//! End-to-end tests of the core: see `core.rs` and `architecture.rs`.
