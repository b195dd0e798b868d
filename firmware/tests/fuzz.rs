//! Robustness of the decoder, the message parser and the MCU logic against
//! arbitrary bytes: no panic, fixed memory, and nothing corrupted accepted.

use fclink::frame::{self, Decoder, FrameError, MAX_WIRE};
use fclink::{AckStatus, Config, FcState, Firmware, FromFc, Refusal, Setpoint, Telemetry, ToFc};
use proptest::prelude::*;

/// A small deterministic generator (xorshift64*), so the millions of inputs
/// below are the same on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn any_setpoint() -> impl Strategy<Value = Setpoint> {
    prop_oneof![
        (any::<f32>(), any::<f32>(), any::<f32>(), any::<f32>()).prop_map(
            |(forward, left, up, yaw_rate)| Setpoint::Velocity {
                forward,
                left,
                up,
                yaw_rate
            }
        ),
        (any::<f32>(), any::<f32>(), any::<f32>(), any::<f32>()).prop_map(
            |(roll, pitch, yaw_rate, thrust)| Setpoint::Attitude {
                roll,
                pitch,
                yaw_rate,
                thrust
            }
        ),
        any::<[f32; 4]>().prop_map(Setpoint::Motors),
    ]
}

fn any_to_fc() -> impl Strategy<Value = ToFc> {
    prop_oneof![
        any::<u32>().prop_map(|uptime_ms| ToFc::Heartbeat { uptime_ms }),
        Just(ToFc::Arm),
        Just(ToFc::Disarm),
        any_setpoint().prop_map(ToFc::Setpoint),
        any::<u32>().prop_map(|confirm| ToFc::EmergencyStop { confirm }),
    ]
}

fn any_state() -> impl Strategy<Value = FcState> {
    prop_oneof![
        Just(FcState::Disarmed),
        Just(FcState::Armed),
        Just(FcState::FailsafeHover),
        Just(FcState::FailsafeLand),
        Just(FcState::FailsafeStop),
    ]
}

fn any_from_fc() -> impl Strategy<Value = FromFc> {
    let telemetry = (
        (
            any::<u32>(),
            any_state(),
            any::<[f32; 3]>(),
            any::<[f32; 3]>(),
            any::<[f32; 3]>(),
        ),
        (
            any::<[f32; 3]>(),
            any::<f32>(),
            any::<u16>(),
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
        ),
        (any::<[f32; 3]>(), any::<[f32; 3]>(), any::<u32>()),
    )
        .prop_map(
            |(
                (uptime_ms, state, attitude, rates, accel),
                (
                    velocity,
                    altitude,
                    battery_mv,
                    faults,
                    last_setpoint_seq,
                    setpoint_age_ms,
                    rx_errors,
                    stale_setpoints,
                ),
                (position, target, policy_cycles),
            )| {
                FromFc::Telemetry(Telemetry {
                    uptime_ms,
                    state,
                    attitude,
                    rates,
                    accel,
                    velocity,
                    altitude,
                    position,
                    target,
                    battery_mv,
                    faults,
                    last_setpoint_seq,
                    setpoint_age_ms,
                    rx_errors,
                    stale_setpoints,
                    policy_cycles,
                })
            },
        );
    let ack = (
        any::<u16>(),
        prop_oneof![
            Just(AckStatus::Accepted),
            Just(AckStatus::Clamped),
            any::<u16>().prop_map(|f| AckStatus::Refused(Refusal::ArmingChecks(f))),
            Just(AckStatus::Refused(Refusal::NotFinite)),
        ],
    )
        .prop_map(|(seq, status)| FromFc::Ack { seq, status });
    prop_oneof![telemetry, ack]
}

/// Bitwise equality, so that NaN payloads compare equal to themselves.
fn same<T: std::fmt::Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, rng_seed: proptest::test_runner::RngSeed::Fixed(7), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_command_round_trips(seq in any::<u16>(), msg in any_to_fc()) {
        let mut buf = [0u8; MAX_WIRE];
        let wire = frame::encode(seq, &msg, &mut buf).unwrap().to_vec();
        let f = frame::decode::<ToFc>(&wire[..wire.len() - 1]).unwrap();
        prop_assert_eq!(f.seq, seq);
        prop_assert!(same(&f.msg, &msg));
    }

    #[test]
    fn every_report_round_trips(seq in any::<u16>(), msg in any_from_fc()) {
        let mut buf = [0u8; MAX_WIRE];
        let wire = frame::encode(seq, &msg, &mut buf).unwrap().to_vec();
        prop_assert!(wire.len() <= MAX_WIRE);
        let f = frame::decode::<FromFc>(&wire[..wire.len() - 1]).unwrap();
        prop_assert!(same(&f.msg, &msg));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut d = Decoder::new();
        for &b in &bytes {
            let _ = d.push::<ToFc>(b);
        }
        let _ = frame::decode::<FromFc>(&bytes);
    }
}

/// Five million random frames, a third of them damaged in one of the ways a
/// serial line damages them (bits flipped, a byte dropped, a byte inserted,
/// cut short), fed to one decoder as one stream. Every frame accepted must be
/// exactly a frame that was sent; a damaged frame can take at most the frame
/// after it down with it (when its delimiter was lost), so an intact frame that
/// follows an intact frame always arrives: the link is back within two frames.
#[test]
fn millions_of_damaged_frames_are_refused_and_intact_ones_survive() {
    const N: u32 = 5_000_000;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut d = Decoder::new();
    let mut buf = [0u8; MAX_WIRE];
    let mut sent: Vec<Option<ToFc>> = vec![None; 1 << 16];
    let (mut misparsed, mut lost_after_damage, mut lost_after_intact, mut damaged_n) =
        (0u64, 0u64, 0u64, 0u64);
    let mut previous_damaged = false;
    let mut intact_arrived = 0u64;
    for i in 0..N {
        let seq = (i & 0xFFFF) as u16;
        let msg = ToFc::Setpoint(Setpoint::Velocity {
            forward: (rng.below(1000) as f32) * 0.01,
            left: 0.0,
            up: (rng.below(100) as f32) * -0.01,
            yaw_rate: 0.5,
        });
        sent[seq as usize] = Some(msg);
        let original = frame::encode(seq, &msg, &mut buf).unwrap().to_vec();
        let mut wire = original.clone();
        let body = wire.len() - 1;
        if rng.below(3) == 0 {
            match rng.below(4) {
                0 => {
                    for _ in 0..=rng.below(3) {
                        let bit = rng.below(body as u64 * 8) as usize;
                        wire[bit / 8] ^= 1 << (bit % 8);
                    }
                }
                1 => {
                    wire.remove(rng.below(body as u64) as usize);
                }
                2 => {
                    let at = rng.below(body as u64 + 1) as usize;
                    wire.insert(at, rng.next() as u8);
                }
                _ => wire.truncate(rng.below(body as u64) as usize),
            }
        }
        // Damage that happens to leave the frame's bytes as they were (two flips
        // of one bit, a zero inserted just before the delimiter) is no damage.
        let harmless_zero = [&original[..], &[0]].concat();
        let damaged = wire != original && wire != harmless_zero;
        damaged_n += damaged as u64;
        let mut arrived = false;
        for &b in &wire {
            if let Some(Ok(f)) = d.push::<ToFc>(b) {
                let expected = sent[f.seq as usize];
                let recent = f.seq == seq || f.seq == seq.wrapping_sub(1);
                if !recent || expected.is_none_or(|m| !same(&m, &f.msg)) {
                    misparsed += 1;
                }
                arrived |= f.seq == seq;
            }
        }
        intact_arrived += (!damaged && arrived) as u64;
        if !damaged && !arrived {
            if previous_damaged {
                lost_after_damage += 1;
            } else {
                lost_after_intact += 1;
            }
        }
        previous_damaged = damaged;
    }
    let s = d.stats();
    eprintln!(
        "{N} frames, {damaged_n} damaged: {} decoded, {} CRC errors, {} other errors; \
         intact frames lost after a damaged one {lost_after_damage}, after an intact one {lost_after_intact}",
        s.frames, s.crc_errors, s.other_errors
    );
    assert_eq!(misparsed, 0, "a frame that was never sent was accepted");
    assert_eq!(
        lost_after_intact, 0,
        "the link did not recover within two frames"
    );
    assert!(damaged_n > N as u64 / 4);
    // Every intact frame either arrived or is one of those counted lost.
    assert_eq!(intact_arrived + lost_after_damage, N as u64 - damaged_n);
}

/// The MCU logic fed random byte streams, with valid frames mixed in, for
/// simulated minutes: no panic and state always consistent.
#[test]
fn firmware_survives_random_streams() {
    let mut rng = Rng(42);
    let mut fw = Firmware::new(Config::MULTIROTOR);
    let mut buf = [0u8; MAX_WIRE];
    let mut out = 0usize;
    let mut now = 0u32;
    for i in 0..200_000u32 {
        let mut bytes = Vec::new();
        if rng.below(3) == 0 {
            let msg = match rng.below(5) {
                0 => ToFc::Arm,
                1 => ToFc::Disarm,
                2 => ToFc::EmergencyStop {
                    confirm: rng.next() as u32,
                },
                _ => ToFc::Setpoint(Setpoint::Velocity {
                    forward: f32::from_bits(rng.next() as u32),
                    left: (rng.below(200) as f32 - 100.0) * 0.1,
                    up: 0.1,
                    yaw_rate: 0.0,
                }),
            };
            bytes.extend_from_slice(frame::encode(i as u16, &msg, &mut buf).unwrap());
        }
        for _ in 0..rng.below(40) {
            bytes.push(rng.next() as u8);
        }
        fw.on_bytes(now, &bytes, &mut |b| out += b.len());
        now += rng.below(7) as u32;
        fw.poll(now, &mut |b| out += b.len());
        let s = fw.sensors();
        assert!(
            s.velocity
                .iter()
                .all(|v| v.is_finite() && v.abs() <= 3.0 + 1e-3),
            "velocity {:?}",
            s.velocity
        );
    }
    assert!(out > 0);
}

#[test]
fn the_largest_report_fits_a_frame() {
    let t = Telemetry {
        uptime_ms: u32::MAX,
        state: FcState::FailsafeLand,
        attitude: [f32::MAX; 3],
        rates: [f32::MAX; 3],
        accel: [f32::MAX; 3],
        velocity: [f32::MAX; 3],
        altitude: f32::MAX,
        position: [f32::MAX; 3],
        target: [f32::MAX; 3],
        battery_mv: u16::MAX,
        faults: u16::MAX,
        last_setpoint_seq: u16::MAX,
        setpoint_age_ms: u32::MAX,
        rx_errors: u32::MAX,
        stale_setpoints: u32::MAX,
        policy_cycles: u32::MAX,
    };
    let mut buf = [0u8; MAX_WIRE];
    assert!(frame::encode(u16::MAX, &FromFc::Telemetry(t), &mut buf).is_ok());
    assert_eq!(frame::decode::<ToFc>(&[]), Err(FrameError::TooShort));
}

/// The message parser behind the CRC: two million random bodies, each framed
/// with a valid version and CRC so that they reach postcard. No panic; what
/// parses re-encodes to a frame that parses to the same message.
#[test]
fn the_parser_survives_millions_of_random_bodies() {
    use fclink::{cobs, crc::crc32c, frame::VERSION};
    let mut rng = Rng(0x5EED_0001);
    let (mut to_fc_ok, mut from_fc_ok) = (0u32, 0u32);
    let mut raw = [0u8; 128];
    let mut stuffed = [0u8; MAX_WIRE];
    let mut again = [0u8; MAX_WIRE];
    for _ in 0..2_000_000u32 {
        let len = rng.below(118) as usize;
        raw[0] = VERSION;
        raw[1] = rng.next() as u8;
        raw[2] = rng.next() as u8;
        for b in &mut raw[3..3 + len] {
            // Mostly small values, as varints and enum tags are.
            *b = if rng.below(2) == 0 {
                rng.below(8) as u8
            } else {
                rng.next() as u8
            };
        }
        let crc = crc32c(&raw[..3 + len]);
        raw[3 + len..7 + len].copy_from_slice(&crc.to_le_bytes());
        let n = cobs::encode(&raw[..7 + len], &mut stuffed).unwrap();
        if let Ok(f) = frame::decode::<ToFc>(&stuffed[..n]) {
            to_fc_ok += 1;
            let w = frame::encode(f.seq, &f.msg, &mut again).unwrap();
            let back = frame::decode::<ToFc>(&w[..w.len() - 1]).unwrap();
            assert!(same(&back.msg, &f.msg));
        }
        if let Ok(f) = frame::decode::<FromFc>(&stuffed[..n]) {
            from_fc_ok += 1;
            let w = frame::encode(f.seq, &f.msg, &mut again).unwrap();
            let back = frame::decode::<FromFc>(&w[..w.len() - 1]).unwrap();
            assert!(same(&back.msg, &f.msg));
        }
    }
    eprintln!("2000000 random bodies: {to_fc_ok} parsed as commands, {from_fc_ok} as reports");
    assert!(
        to_fc_ok > 0,
        "the generator never produced a parsable command"
    );
}
