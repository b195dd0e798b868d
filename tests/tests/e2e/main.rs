//! The workspace's end-to-end tests, one module per subject, in one test binary:
//! cargo runs test binaries one after another, so in one binary the tests of
//! all subjects share the test threads (a long test of one subject overlaps
//! the others) and the test crate links once. Run one subject with a filter,
//! e.g. `cargo test --release -p e2e-tests --test e2e graph::`.
//!
//! The GPU backend suite stays a binary of its own (`tests/backends.rs`): it is
//! the one carried to a GPU machine, which has no GStreamer for the camera
//! tests' binary to load.

mod aarch64;
mod actors;
mod camera;
mod config_props;
mod fc_link;
mod fly;
mod graph;
mod learn_to_fly;
mod loop_stages;
mod mavlink;
mod persist;
mod record;
mod security;
mod selfi;
mod train;
mod twin;
mod twin_calib;
