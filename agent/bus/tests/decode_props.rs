//! Property tests of every bus decoder: whatever bytes arrive — random, or a
//! well-formed header of any message kind followed by random body bytes, or a
//! valid message cut short or with bytes flipped — decoding returns a message
//! or an error, never panics, never allocates from a length it did not check;
//! and every message that encodes decodes back to itself.

use bus::msg::*;
use bus::wire::{Header, Message, decode, encode};
use proptest::prelude::*;

/// Try every message type on `bytes`; none may panic.
fn decode_all(bytes: &[u8]) {
    let _ = decode::<StereoPair>(bytes);
    let _ = decode::<DepthScan>(bytes);
    let _ = decode::<Setpoint>(bytes);
    let _ = decode::<State>(bytes);
    let _ = decode::<Event>(bytes);
    let _ = decode::<FcStatus>(bytes);
    let _ = decode::<Goal>(bytes);
    let _ = decode::<Weights>(bytes);
    let _ = decode::<Tracks>(bytes);
    let _ = decode::<CameraHealth>(bytes);
    let _ = decode::<ArmRequest>(bytes);
    let _ = bus::wire::decode_header(bytes);
}

/// A valid header of message kind `kind`.
fn header_of(kind: u16, seq: u64, frame_id: &str) -> Vec<u8> {
    // Encode a message of that kind with an empty-ish body, keep the header.
    let h = Header {
        seq,
        stamp_ns: 7,
        frame_id: frame_id.to_string(),
    };
    let mut bytes = encode(
        &h,
        &ArmRequest {
            nonce: 0,
            action: ArmAction::Arm,
        },
    );
    bytes.truncate(bytes.len() - 9);
    bytes[6..8].copy_from_slice(&kind.to_le_bytes());
    bytes
}

fn finite() -> impl Strategy<Value = f32> {
    -1e6f32..1e6
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        // Nothing written into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&bytes);
    }

    #[test]
    fn a_valid_header_with_any_body_never_panics(
        kind in 0u16..16,
        seq in any::<u64>(),
        id in "[a-z_]{0,12}",
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = header_of(kind, seq, &id);
        bytes.extend_from_slice(&body);
        decode_all(&bytes);
    }

    #[test]
    fn a_huge_declared_length_is_refused_not_allocated(kind in 0u16..16, len in any::<u32>()) {
        // Bodies that start with a length field: claim up to 4 G elements.
        let mut bytes = header_of(kind, 0, "x");
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(&[0u8; 16]);
        decode_all(&bytes);
    }

    #[test]
    fn messages_round_trip(
        seq in any::<u64>(),
        stamp in any::<u64>(),
        sp in (finite(), finite(), finite(), finite()),
        scan in proptest::collection::vec(prop_oneof![0.01f32..1e4, Just(f32::NAN)], 0..64),
        text in ".{0,80}",
        goal in (-1e5f64..1e5, -1e5f64..1e5, -1e5f64..1e5),
        nonce in any::<u64>(),
        (w, h) in (1u32..24, 1u32..24),
        seed in any::<u8>(),
    ) {
        let hd = Header { seq, stamp_ns: stamp, frame_id: "camera_left".into() };
        fn back<M: Message + PartialEq + std::fmt::Debug>(h: &Header, m: &M) -> (Header, M) {
            decode::<M>(&encode(h, m)).expect("a message that encodes decodes")
        }
        let s = Setpoint { forward: sp.0, left: sp.1, up: sp.2, yaw_rate: sp.3 };
        prop_assert_eq!(back(&hd, &s), (hd.clone(), s));
        let g = Goal { position: [goal.0, goal.1, goal.2] };
        prop_assert_eq!(back(&hd, &g), (hd.clone(), g));
        let e = Event { text: text.clone() };
        prop_assert_eq!(back(&hd, &e), (hd.clone(), e));
        let action = [ArmAction::Disarm, ArmAction::Arm, ArmAction::EmergencyStop][(seed % 3) as usize];
        let a = ArmRequest { nonce, action };
        prop_assert_eq!(back(&hd, &a), (hd.clone(), a));
        // NaN (unknown columns) survives bit for bit.
        let d = DepthScan { compute_ns: stamp, depth: scan.clone() };
        let (h2, d2) = decode::<DepthScan>(&encode(&hd, &d)).unwrap();
        prop_assert_eq!(h2, hd.clone());
        prop_assert_eq!(
            d2.depth.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            scan.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        let n = (w * h) as usize;
        let p = StereoPair {
            width: w,
            height: h,
            left: (0..n).map(|k| (k as u8).wrapping_mul(seed)).collect(),
            right: (0..n).map(|k| (k as u8).wrapping_add(seed)).collect(),
        };
        prop_assert_eq!(back(&hd, &p), (hd.clone(), p.clone()));
        // Every strict prefix of a valid message is refused.
        let full = encode(&hd, &p);
        for cut in [0, 1, 5, full.len() / 2, full.len() - 1] {
            prop_assert!(decode::<StereoPair>(&full[..cut]).is_err());
        }
    }
}
