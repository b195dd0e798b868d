//! The messages on the bus and their body layouts.

use crate::wire::{DecodeError, Message, Reader, Writer};

fn malformed(name: &'static str, reason: impl Into<String>) -> DecodeError {
    DecodeError::Malformed {
        name,
        reason: reason.into(),
    }
}

/// Largest image of a stereo pair, in pixels per eye (4096x4096): far above any
/// stereo camera matched at a loop rate, small enough that a forged header
/// cannot make a node allocate gigabytes.
pub const MAX_PAIR_PIXELS: usize = 4096 * 4096;

/// A rectified 8-bit stereo pair of one instant (left and right never travel apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StereoPair {
    /// Width (px).
    pub width: u32,
    /// Height (px).
    pub height: u32,
    /// Left image, row-major.
    pub left: Vec<u8>,
    /// Right image, row-major.
    pub right: Vec<u8>,
}

impl Message for StereoPair {
    const KIND: u16 = 1;
    const NAME: &'static str = "StereoPair";
    fn write_body(&self, w: &mut Writer) {
        w.u32(self.width);
        w.u32(self.height);
        w.bytes(&self.left);
        w.bytes(&self.right);
    }
    fn read_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let (width, height) = (r.u32()?, r.u32()?);
        let n = (width as usize)
            .checked_mul(height as usize)
            .filter(|&n| n > 0 && n <= MAX_PAIR_PIXELS)
            .ok_or_else(|| {
                malformed(
                    Self::NAME,
                    format!(
                        "image size {width}x{height} (at most {MAX_PAIR_PIXELS} pixels per eye)"
                    ),
                )
            })?;
        if r.remaining() != 2 * n {
            return Err(malformed(
                Self::NAME,
                format!(
                    "{width}x{height} needs {} image bytes, {} present",
                    2 * n,
                    r.remaining()
                ),
            ));
        }
        Ok(Self {
            width,
            height,
            left: r.bytes(n)?.to_vec(),
            right: r.bytes(n)?.to_vec(),
        })
    }
}

/// A per-column depth scan (m, left to right; NaN where the cue saw nothing).
#[derive(Debug, Clone, PartialEq)]
pub struct DepthScan {
    /// Time the producer spent computing it (ns), so that latency figures can
    /// separate transport from compute.
    pub compute_ns: u64,
    /// Depth per column.
    pub depth: Vec<f32>,
}

impl Message for DepthScan {
    const KIND: u16 = 2;
    const NAME: &'static str = "DepthScan";
    fn write_body(&self, w: &mut Writer) {
        w.u64(self.compute_ns);
        w.u32(self.depth.len() as u32);
        for d in &self.depth {
            w.f32(*d);
        }
    }
    fn read_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let compute_ns = r.u64()?;
        let n = r.u32()? as usize;
        if r.remaining() != 4 * n {
            return Err(malformed(
                Self::NAME,
                format!(
                    "{n} columns need {} bytes, {} present",
                    4 * n,
                    r.remaining()
                ),
            ));
        }
        let depth = (0..n).map(|_| r.f32()).collect::<Result<Vec<_>, _>>()?;
        if depth.iter().any(|d| d.is_finite() && *d <= 0.0) {
            return Err(malformed(Self::NAME, "non-positive depth"));
        }
        Ok(Self { compute_ns, depth })
    }
}

/// A velocity setpoint for the flight controller (body frame).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Setpoint {
    /// Forward speed (m/s).
    pub forward: f32,
    /// Leftward speed (m/s).
    pub left: f32,
    /// Upward speed (m/s).
    pub up: f32,
    /// Yaw rate (rad/s, counter-clockwise).
    pub yaw_rate: f32,
}

impl Setpoint {
    /// Hover in place: what the safety node commands when a peer is lost.
    pub const HOVER: Setpoint = Setpoint {
        forward: 0.0,
        left: 0.0,
        up: 0.0,
        yaw_rate: 0.0,
    };
}

impl Message for Setpoint {
    const KIND: u16 = 3;
    const NAME: &'static str = "Setpoint";
    fn write_body(&self, w: &mut Writer) {
        for v in [self.forward, self.left, self.up, self.yaw_rate] {
            w.f32(v);
        }
    }
    fn read_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let s = Self {
            forward: r.f32()?,
            left: r.f32()?,
            up: r.f32()?,
            yaw_rate: r.f32()?,
        };
        if ![s.forward, s.left, s.up, s.yaw_rate]
            .iter()
            .all(|v| v.is_finite())
        {
            return Err(malformed(Self::NAME, "non-finite value"));
        }
        Ok(s)
    }
}

/// The robot's state estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct State {
    /// Position (m, world frame, z up).
    pub position: [f64; 3],
    /// Attitude quaternion (w, x, y, z).
    pub attitude: [f64; 4],
    /// Velocity (m/s, body frame).
    pub velocity: [f32; 3],
}

impl Message for State {
    const KIND: u16 = 4;
    const NAME: &'static str = "State";
    fn write_body(&self, w: &mut Writer) {
        self.position.iter().for_each(|v| w.f64(*v));
        self.attitude.iter().for_each(|v| w.f64(*v));
        self.velocity.iter().for_each(|v| w.f32(*v));
    }
    fn read_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let s = Self {
            position: [r.f64()?, r.f64()?, r.f64()?],
            attitude: [r.f64()?, r.f64()?, r.f64()?, r.f64()?],
            velocity: [r.f32()?, r.f32()?, r.f32()?],
        };
        // A state nobody can fly on (a NaN altitude would become NaN
        // setpoints) is refused here, whoever sent it.
        let finite = s.position.iter().chain(&s.attitude).all(|v| v.is_finite())
            && s.velocity.iter().all(|v| v.is_finite());
        if !finite {
            return Err(malformed(Self::NAME, "non-finite value"));
        }
        let norm = s.attitude.iter().map(|q| q * q).sum::<f64>().sqrt();
        if !(0.9..=1.1).contains(&norm) {
            return Err(malformed(
                Self::NAME,
                format!("attitude quaternion of norm {norm:.3}, not a rotation"),
            ));
        }
        Ok(s)
    }
}

/// Farthest goal accepted, per coordinate (m).
pub const MAX_GOAL_M: f64 = 100_000.0;

/// A line of text: mode switches, interventions, collisions, node failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The text (UTF-8).
    pub text: String,
}

impl Message for Event {
    const KIND: u16 = 5;
    const NAME: &'static str = "Event";
    fn write_body(&self, w: &mut Writer) {
        w.u32(self.text.len() as u32);
        w.bytes(self.text.as_bytes());
    }
    fn read_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = r.u32()? as usize;
        let text = String::from_utf8(r.bytes(n)?.to_vec())
            .map_err(|_| malformed(Self::NAME, "text is not UTF-8"))?;
        Ok(Self { text })
    }
}

/// The flight controller as the link node sees it: its state and sensors,
/// and the health of the serial link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FcStatus {
    /// 0 disarmed, 1 armed, 2 failsafe (hover), 3 failsafe (landing),
    /// 4 failsafe (stopped), 255 link down (the rest is the last known).
    pub state: u8,
    /// Fault flags of the firmware (`fclink::faults`).
    pub faults: u16,
    /// Roll, pitch, yaw (rad).
    pub attitude: [f32; 3],
    /// Body velocity (m/s): forward, left, up.
    pub velocity: [f32; 3],
    /// Height above take-off (m).
    pub altitude: f32,
    /// Battery (mV).
    pub battery_mv: u16,
    /// Milliseconds since the firmware last accepted a setpoint.
    pub setpoint_age_ms: u32,
    /// Frames the agent's driver refused (CRC and other), since start.
    pub link_errors: u32,
    /// Times the serial device was re-opened.
    pub reconnects: u32,
}

impl FcStatus {
    /// `state` value while the serial link is down.
    pub const LINK_DOWN: u8 = 255;
}

impl Message for FcStatus {
    const KIND: u16 = 6;
    const NAME: &'static str = "FcStatus";
    fn write_body(&self, w: &mut Writer) {
        w.u8(self.state);
        w.u16(self.faults);
        self.attitude.iter().for_each(|v| w.f32(*v));
        self.velocity.iter().for_each(|v| w.f32(*v));
        w.f32(self.altitude);
        w.u16(self.battery_mv);
        w.u32(self.setpoint_age_ms);
        w.u32(self.link_errors);
        w.u32(self.reconnects);
    }
    fn read_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let state = r.u8()?;
        if state > 4 && state != Self::LINK_DOWN {
            return Err(malformed(Self::NAME, format!("unknown state {state}")));
        }
        Ok(Self {
            state,
            faults: r.u16()?,
            attitude: [r.f32()?, r.f32()?, r.f32()?],
            velocity: [r.f32()?, r.f32()?, r.f32()?],
            altitude: r.f32()?,
            battery_mv: r.u16()?,
            setpoint_age_ms: r.u32()?,
            link_errors: r.u32()?,
            reconnects: r.u32()?,
        })
    }
}

/// A camera's health, published by the camera node about once a second and
/// whenever the stream is lost or comes back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CameraHealth {
    /// 1 while pairs flow, 0 when the camera is lost (stopped, unplugged,
    /// no frame within the stall limit).
    pub streaming: u8,
    /// Pairs per second (over the last second of capture times).
    pub fps: f32,
    /// Skew of the last pair, right minus left capture time (ms).
    pub skew_ms: f32,
    /// Largest skew seen (ms).
    pub max_skew_ms: f32,
    /// Receive time minus capture time of the last pair (ms).
    pub latency_ms: f32,
    /// Pairs published since the node started.
    pub pairs: u64,
    /// Frames dropped since the node started (unpaired, late, unreadable).
    pub dropped: u64,
    /// Times the camera was started again after a loss.
    pub restarts: u32,
}

impl Message for CameraHealth {
    const KIND: u16 = 10;
    const NAME: &'static str = "CameraHealth";
    fn write_body(&self, w: &mut Writer) {
        w.u8(self.streaming);
        w.f32(self.fps);
        w.f32(self.skew_ms);
        w.f32(self.max_skew_ms);
        w.f32(self.latency_ms);
        w.u64(self.pairs);
        w.u64(self.dropped);
        w.u32(self.restarts);
    }
    fn read_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let streaming = r.u8()?;
        if streaming > 1 {
            return Err(malformed(Self::NAME, format!("streaming flag {streaming}")));
        }
        Ok(Self {
            streaming,
            fps: r.f32()?,
            skew_ms: r.f32()?,
            max_skew_ms: r.f32()?,
            latency_ms: r.f32()?,
            pairs: r.u64()?,
            dropped: r.u64()?,
            restarts: r.u32()?,
        })
    }
}

/// What an operator asks of the flight controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArmAction {
    /// Disarm on the ground (refused by the firmware in the air); also
    /// acknowledges latched faults.
    Disarm,
    /// Arm (after the operator's preflight checks).
    Arm,
    /// Motors off now, wherever the vehicle is (`agent estop`): our
    /// firmware's emergency stop (latched until a disarm on the ground),
    /// MAVLink's forced disarm (not latched by PX4/ArduPilot).
    EmergencyStop,
}

impl ArmAction {
    /// Its name in the node's answers (`arm request ...`).
    pub fn name(self) -> &'static str {
        match self {
            ArmAction::Disarm => "disarm",
            ArmAction::Arm => "arm",
            ArmAction::EmergencyStop => "emergency stop",
        }
    }
}

/// An operator's request to the flight controller: arm (`agent arm`, after its
/// preflight checks), disarm on the ground (`agent disarm`, which also
/// acknowledges the flight controller's latched faults), or stop the motors
/// (`agent estop`). The flight-controller node answers on `events` naming
/// `nonce`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArmRequest {
    /// Chosen by the requester, so that it can tell its answer from others'.
    pub nonce: u64,
    /// What is asked.
    pub action: ArmAction,
}

impl Message for ArmRequest {
    const KIND: u16 = 11;
    const NAME: &'static str = "ArmRequest";
    fn write_body(&self, w: &mut Writer) {
        w.u64(self.nonce);
        w.u8(match self.action {
            ArmAction::Disarm => 0,
            ArmAction::Arm => 1,
            ArmAction::EmergencyStop => 2,
        });
    }
    fn read_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let nonce = r.u64()?;
        let action = match r.u8()? {
            0 => ArmAction::Disarm,
            1 => ArmAction::Arm,
            2 => ArmAction::EmergencyStop,
            other => {
                return Err(malformed(
                    Self::NAME,
                    format!("action {other} is none of 0 (disarm), 1 (arm), 2 (emergency stop)"),
                ));
            }
        };
        Ok(Self { nonce, action })
    }
}

/// Where the robot is asked to go (goal-reaching navigation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Goal {
    /// Goal position (m, world frame, z up).
    pub position: [f64; 3],
}

impl Message for Goal {
    const KIND: u16 = 7;
    const NAME: &'static str = "Goal";
    fn write_body(&self, w: &mut Writer) {
        self.position.iter().for_each(|v| w.f64(*v));
    }
    fn read_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let position = [r.f64()?, r.f64()?, r.f64()?];
        // Within 100 km: a goal from a ground station that no policy can take
        // in single precision (1e300 m) is refused here.
        if !position
            .iter()
            .all(|v| v.is_finite() && v.abs() <= MAX_GOAL_M)
        {
            return Err(malformed(
                Self::NAME,
                format!("position {position:?} not finite or beyond {MAX_GOAL_M} m"),
            ));
        }
        Ok(Self { position })
    }
}

/// New policy weights from an online learner: a burnpack file's bytes, with a
/// version the policy node reports when it swaps them in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Weights {
    /// Increases with every publication of one learner.
    pub version: u64,
    /// What the weights are for (`selfi-actor`), so a node never loads another network.
    pub network: String,
    /// The `.bpk` file's bytes.
    pub bpk: Vec<u8>,
}

/// Largest weights message accepted (bytes).
pub const MAX_WEIGHTS: usize = 64 << 20;

impl Message for Weights {
    const KIND: u16 = 8;
    const NAME: &'static str = "Weights";
    fn write_body(&self, w: &mut Writer) {
        w.u64(self.version);
        w.u32(self.network.len() as u32);
        w.bytes(self.network.as_bytes());
        w.u32(self.bpk.len() as u32);
        w.bytes(&self.bpk);
    }
    fn read_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u64()?;
        let n = r.u32()? as usize;
        let network = String::from_utf8(r.bytes(n)?.to_vec())
            .map_err(|_| malformed(Self::NAME, "network name is not UTF-8"))?;
        let n = r.u32()? as usize;
        if n > MAX_WEIGHTS {
            return Err(malformed(
                Self::NAME,
                format!("{n} bytes of weights exceed {MAX_WEIGHTS}"),
            ));
        }
        Ok(Self {
            version,
            network,
            bpk: r.bytes(n)?.to_vec(),
        })
    }
}

/// One moving obstacle a people tracker follows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Track {
    /// Stays the same while the tracker follows the same obstacle.
    pub id: u32,
    /// Position (m, world frame).
    pub position: [f64; 2],
    /// Velocity (m/s, world frame).
    pub velocity: [f64; 2],
}

/// Largest number of tracks one message may carry.
pub const MAX_TRACKS: usize = 256;

/// The moving obstacles (walkers) tracked at one camera frame; an empty list
/// says none was seen, so a tracker that stops publishing is told apart from
/// one that sees nobody.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tracks {
    /// The tracks, any order.
    pub tracks: Vec<Track>,
}

impl Message for Tracks {
    const KIND: u16 = 9;
    const NAME: &'static str = "Tracks";
    fn write_body(&self, w: &mut Writer) {
        w.u32(self.tracks.len() as u32);
        for t in &self.tracks {
            w.u32(t.id);
            t.position.iter().chain(&t.velocity).for_each(|v| w.f64(*v));
        }
    }
    fn read_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = r.u32()? as usize;
        if n > MAX_TRACKS {
            return Err(malformed(
                Self::NAME,
                format!("{n} tracks exceed {MAX_TRACKS}"),
            ));
        }
        let mut tracks = Vec::with_capacity(n);
        for _ in 0..n {
            let id = r.u32()?;
            let position = [r.f64()?, r.f64()?];
            let velocity = [r.f64()?, r.f64()?];
            if !position.iter().chain(&velocity).all(|v| v.is_finite()) {
                return Err(malformed(
                    Self::NAME,
                    format!("track {id} has a non-finite position or velocity"),
                ));
            }
            tracks.push(Track {
                id,
                position,
                velocity,
            });
        }
        Ok(Self { tracks })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Header, decode, encode};

    fn h() -> Header {
        Header {
            seq: 42,
            stamp_ns: 1_700_000_000_123_456_789,
            frame_id: "camera_left".into(),
        }
    }

    #[test]
    fn every_message_round_trips() {
        let pair = StereoPair {
            width: 3,
            height: 2,
            left: vec![1, 2, 3, 4, 5, 6],
            right: vec![7, 8, 9, 10, 11, 12],
        };
        assert_eq!(
            decode::<StereoPair>(&encode(&h(), &pair)).unwrap(),
            (h(), pair)
        );
        let scan = DepthScan {
            compute_ns: 1234,
            depth: vec![1.5, f32::NAN, 3.0],
        };
        let (hh, back) = decode::<DepthScan>(&encode(&h(), &scan)).unwrap();
        assert_eq!(hh, h());
        assert_eq!(back.compute_ns, 1234);
        assert!(back.depth[1].is_nan() && back.depth[2] == 3.0);
        let sp = Setpoint {
            forward: 1.0,
            left: 0.0,
            up: -0.2,
            yaw_rate: 0.5,
        };
        assert_eq!(decode::<Setpoint>(&encode(&h(), &sp)).unwrap().1, sp);
        let st = State {
            position: [1.0, 2.0, 3.0],
            attitude: [1.0, 0.0, 0.0, 0.0],
            velocity: [0.5, 0.0, 0.0],
        };
        assert_eq!(decode::<State>(&encode(&h(), &st)).unwrap().1, st);
        let ev = Event {
            text: "switch to mono".into(),
        };
        assert_eq!(decode::<Event>(&encode(&h(), &ev)).unwrap().1, ev);
        let fc = FcStatus {
            state: 2,
            faults: 4,
            attitude: [0.1, -0.1, 1.5],
            velocity: [0.0, 0.0, -0.5],
            altitude: 1.25,
            battery_mv: 12_400,
            setpoint_age_ms: 210,
            link_errors: 3,
            reconnects: 1,
        };
        let b = encode(&h(), &fc);
        // 26-byte header + 11-byte frame id + 45-byte body, as documented.
        assert_eq!(b.len(), 37 + 45);
        assert_eq!(decode::<FcStatus>(&b).unwrap().1, fc);
        let mut bad = b.clone();
        bad[37] = 9;
        assert!(decode::<FcStatus>(&bad).is_err(), "unknown state accepted");
        let tr = Tracks {
            tracks: vec![
                Track {
                    id: 7,
                    position: [1.0, -2.0],
                    velocity: [0.5, 0.25],
                },
                Track {
                    id: 9,
                    position: [3.0, 0.0],
                    velocity: [0.0, -0.8],
                },
            ],
        };
        assert_eq!(decode::<Tracks>(&encode(&h(), &tr)).unwrap().1, tr);
        let mut nan = tr.clone();
        nan.tracks[1].velocity[0] = f64::NAN;
        let err = decode::<Tracks>(&encode(&h(), &nan))
            .unwrap_err()
            .to_string();
        assert!(err.contains("track 9"), "{err}");
    }

    #[test]
    fn the_header_layout_is_the_documented_one() {
        let b = encode(&h(), &Setpoint::HOVER);
        assert_eq!(&b[0..4], b"ONBD");
        assert_eq!(u16::from_le_bytes([b[4], b[5]]), 1, "schema version");
        assert_eq!(u16::from_le_bytes([b[6], b[7]]), 3, "kind");
        assert_eq!(u64::from_le_bytes(b[8..16].try_into().unwrap()), 42);
        assert_eq!(
            u64::from_le_bytes(b[16..24].try_into().unwrap()),
            1_700_000_000_123_456_789
        );
        assert_eq!(u16::from_le_bytes([b[24], b[25]]), 11);
        assert_eq!(&b[26..37], b"camera_left");
        assert_eq!(b.len(), 37 + 16);
    }

    #[test]
    fn malformed_and_foreign_bytes_are_refused_with_the_reason() {
        let good = encode(
            &h(),
            &StereoPair {
                width: 2,
                height: 2,
                left: vec![0; 4],
                right: vec![0; 4],
            },
        );
        // Every truncation is an error, never a panic.
        for n in 0..good.len() {
            assert!(decode::<StereoPair>(&good[..n]).is_err(), "{n} bytes");
        }
        let mut v2 = good.clone();
        v2[4] = 2;
        assert_eq!(
            decode::<StereoPair>(&v2).unwrap_err(),
            DecodeError::Version { got: 2, want: 1 }
        );
        assert!(matches!(
            decode::<Setpoint>(&good),
            Err(DecodeError::Kind {
                got: 1,
                want: 3,
                ..
            })
        ));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(matches!(
            decode::<StereoPair>(&bad),
            Err(DecodeError::Magic(_))
        ));
        let mut extra = good.clone();
        extra.push(0);
        assert!(matches!(
            decode::<StereoPair>(&extra),
            Err(DecodeError::Malformed { .. })
        ));
        // A width and height whose product overflows or is absurd.
        let mut huge = good.clone();
        huge[37..41].copy_from_slice(&u32::MAX.to_le_bytes());
        huge[41..45].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode::<StereoPair>(&huge),
            Err(DecodeError::Malformed { .. })
        ));
        let nan = encode(
            &h(),
            &Setpoint {
                forward: f32::NAN,
                ..Setpoint::HOVER
            },
        );
        assert!(decode::<Setpoint>(&nan).is_err());
    }

    /// An 8192x8192 pair header is refused by its size alone, before any
    /// image byte is looked at or allocated.
    #[test]
    fn oversized_pair_is_refused() {
        let mut forged = encode(
            &h(),
            &StereoPair {
                width: 2,
                height: 2,
                left: vec![0; 4],
                right: vec![0; 4],
            },
        );
        forged[37..41].copy_from_slice(&8192u32.to_le_bytes());
        forged[41..45].copy_from_slice(&8192u32.to_le_bytes());
        match decode::<StereoPair>(&forged) {
            Err(DecodeError::Malformed { reason, .. }) => {
                assert!(reason.contains("pixels per eye"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        // The largest allowed size still decodes when its bytes are there.
        let side = 4096;
        let ok = StereoPair {
            width: side,
            height: side,
            left: vec![1; (side * side) as usize],
            right: vec![2; (side * side) as usize],
        };
        assert_eq!(decode::<StereoPair>(&encode(&h(), &ok)).unwrap().1, ok);
    }

    #[test]
    fn a_state_nobody_can_fly_on_is_refused() {
        let good = State {
            position: [1.0, 2.0, 1.5],
            attitude: [1.0, 0.0, 0.0, 0.0],
            velocity: [0.5, 0.0, 0.0],
        };
        assert!(decode::<State>(&encode(&h(), &good)).is_ok());
        let mut nan_alt = good;
        nan_alt.position[2] = f64::NAN;
        let mut inf_v = good;
        inf_v.velocity[1] = f32::INFINITY;
        let mut zero_q = good;
        zero_q.attitude = [0.0; 4];
        for bad in [nan_alt, inf_v, zero_q] {
            assert!(
                matches!(
                    decode::<State>(&encode(&h(), &bad)),
                    Err(DecodeError::Malformed { .. })
                ),
                "{bad:?} accepted"
            );
        }
    }
}
