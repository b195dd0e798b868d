//! What the robot's crates and the simulator twin share, so that neither has
//! to depend on the other: the deterministic generator ([`rng`]) the learners'
//! replays and the twin draw from, and the convention that mounts the camera
//! on the body.
#![forbid(unsafe_code)]

pub mod rng;

/// Held while a network draws its initial weights from burn's CPU generator.
/// That generator is one per process and every network (the mono network, the
/// learners' perceptrons) draws there before moving to its device, so one lock
/// for all of them makes a seed give the same weights even while other threads
/// create networks.
pub static NETWORK_INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Camera-to-body rotation of a forward-looking camera on a body with x forward,
/// y left, z up (row-major): the camera's z (optical axis) is the body's x, its
/// x (right) is the body's −y, its y (down) is the body's −z.
pub const CAMERA_TO_BODY: [[f64; 3]; 3] = [[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]];
