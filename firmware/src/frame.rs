//! Frames on the wire and the streaming decoder that finds them.
//!
//! A frame is `COBS(version, seq, body, crc32c) 0x00`: the version byte, a
//! little-endian u16 sequence number, the postcard-encoded message and the
//! CRC-32C (little-endian) of everything before it, stuffed so that the only
//! zero is the delimiter. A receiver that joins mid-stream or loses bytes
//! drops what it holds at the next zero and resumes with the frame after it.

use serde::{Serialize, de::DeserializeOwned};

use crate::cobs;
use crate::crc::crc32c;

/// Wire version; a frame of another version is refused, not guessed at.
pub const VERSION: u8 = 3;

/// Largest unstuffed frame (version + seq + body + crc), bytes.
pub const MAX_FRAME: usize = 128;

/// Largest frame on the wire, stuffed, with its delimiter.
pub const MAX_WIRE: usize = cobs::max_encoded_len(MAX_FRAME) + 1;

/// A decoded frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame<M> {
    /// Sender's sequence number (wraps).
    pub seq: u16,
    /// The message.
    pub msg: M,
}

/// Why bytes on the wire did not make a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// More than [`MAX_WIRE`] bytes without a delimiter; they were dropped.
    TooLong,
    /// The stuffing is broken (bytes lost or inserted).
    Stuffing,
    /// Shorter than the fixed fields.
    TooShort,
    /// CRC mismatch.
    Crc,
    /// Another wire version.
    Version(u8),
    /// The body is not a message of this version.
    Body,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FrameError::TooLong => write!(f, "frame longer than {MAX_WIRE} bytes"),
            FrameError::Stuffing => write!(f, "broken byte stuffing"),
            FrameError::TooShort => write!(f, "frame too short"),
            FrameError::Crc => write!(f, "CRC mismatch"),
            FrameError::Version(v) => write!(f, "wire version {v}, expected {VERSION}"),
            FrameError::Body => write!(f, "undecodable message body"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for FrameError {}

/// Encodes one frame into `out`; returns the bytes to send (delimiter included).
/// Fails only if the message does not fit in [`MAX_FRAME`].
pub fn encode<'a, M: Serialize>(
    seq: u16,
    msg: &M,
    out: &'a mut [u8; MAX_WIRE],
) -> Result<&'a [u8], FrameError> {
    let mut raw = [0u8; MAX_FRAME];
    raw[0] = VERSION;
    raw[1..3].copy_from_slice(&seq.to_le_bytes());
    let body_len = postcard::to_slice(msg, &mut raw[3..MAX_FRAME - 4])
        .map_err(|_| FrameError::TooLong)?
        .len();
    let n = 3 + body_len;
    let crc = crc32c(&raw[..n]);
    raw[n..n + 4].copy_from_slice(&crc.to_le_bytes());
    let stuffed =
        cobs::encode(&raw[..n + 4], &mut out[..MAX_WIRE - 1]).map_err(|_| FrameError::TooLong)?;
    out[stuffed] = 0;
    Ok(&out[..stuffed + 1])
}

/// Decodes one stuffed block (without its delimiter).
pub fn decode<M: DeserializeOwned>(block: &[u8]) -> Result<Frame<M>, FrameError> {
    let mut raw = [0u8; MAX_FRAME];
    let n = cobs::decode(block, &mut raw).map_err(|e| match e {
        cobs::CobsError::Overflow => FrameError::TooLong,
        _ => FrameError::Stuffing,
    })?;
    if n < 3 + 4 {
        return Err(FrameError::TooShort);
    }
    let (head, crc) = raw[..n].split_at(n - 4);
    if crc32c(head) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err(FrameError::Crc);
    }
    if head[0] != VERSION {
        return Err(FrameError::Version(head[0]));
    }
    let seq = u16::from_le_bytes([head[1], head[2]]);
    let (msg, rest) = postcard::take_from_bytes(&head[3..]).map_err(|_| FrameError::Body)?;
    if !rest.is_empty() {
        return Err(FrameError::Body);
    }
    Ok(Frame { seq, msg })
}

/// Counts of what a [`Decoder`] saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecoderStats {
    /// Frames decoded.
    pub frames: u32,
    /// Blocks refused for their CRC.
    pub crc_errors: u32,
    /// Blocks refused for anything else (stuffing, length, version, body).
    pub other_errors: u32,
    /// Bytes thrown away (refused blocks and overlong runs).
    pub dropped_bytes: u32,
}

/// Finds frames in a byte stream, one byte at a time, in fixed memory.
pub struct Decoder {
    buf: [u8; MAX_WIRE],
    len: usize,
    overflowed: bool,
    stats: DecoderStats,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// An empty decoder.
    pub const fn new() -> Self {
        Self {
            buf: [0; MAX_WIRE],
            len: 0,
            overflowed: false,
            stats: DecoderStats {
                frames: 0,
                crc_errors: 0,
                other_errors: 0,
                dropped_bytes: 0,
            },
        }
    }

    /// What it saw so far.
    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// Drops a partly received frame (after the line was re-opened), counting
    /// its bytes as dropped.
    pub fn reset(&mut self) {
        self.stats.dropped_bytes = self.stats.dropped_bytes.wrapping_add(self.len as u32);
        self.len = 0;
        self.overflowed = false;
    }

    /// Feeds one byte; at a delimiter returns the frame (or why the bytes
    /// before it were not one). Empty blocks (back-to-back delimiters, which a
    /// sender may use to flush a receiver) return nothing.
    pub fn push<M: DeserializeOwned>(&mut self, byte: u8) -> Option<Result<Frame<M>, FrameError>> {
        if byte != 0 {
            if self.len < self.buf.len() {
                self.buf[self.len] = byte;
                self.len += 1;
            } else {
                self.overflowed = true;
                self.stats.dropped_bytes = self.stats.dropped_bytes.wrapping_add(1);
            }
            return None;
        }
        let len = core::mem::take(&mut self.len);
        if core::mem::take(&mut self.overflowed) {
            self.stats.dropped_bytes = self.stats.dropped_bytes.wrapping_add(len as u32);
            self.stats.other_errors = self.stats.other_errors.wrapping_add(1);
            return Some(Err(FrameError::TooLong));
        }
        if len == 0 {
            return None;
        }
        let result = decode(&self.buf[..len]);
        match &result {
            Ok(_) => self.stats.frames = self.stats.frames.wrapping_add(1),
            Err(e) => {
                self.stats.dropped_bytes = self.stats.dropped_bytes.wrapping_add(len as u32);
                if *e == FrameError::Crc {
                    self.stats.crc_errors = self.stats.crc_errors.wrapping_add(1);
                } else {
                    self.stats.other_errors = self.stats.other_errors.wrapping_add(1);
                }
            }
        }
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{FromFc, Setpoint, ToFc};

    fn feed<M: DeserializeOwned>(
        d: &mut Decoder,
        bytes: &[u8],
    ) -> Vec<Result<Frame<M>, FrameError>> {
        bytes.iter().filter_map(|&b| d.push(b)).collect()
    }

    #[test]
    fn frames_round_trip_through_the_decoder() {
        let mut out = [0u8; MAX_WIRE];
        let msg = ToFc::Setpoint(Setpoint::Velocity {
            forward: 1.5,
            left: -0.25,
            up: 0.0,
            yaw_rate: 0.3,
        });
        let wire = encode(513, &msg, &mut out).unwrap().to_vec();
        assert_eq!(wire.iter().filter(|&&b| b == 0).count(), 1);
        assert!(wire.len() < 32, "a setpoint takes {} bytes", wire.len());
        let mut d = Decoder::new();
        let got = feed::<ToFc>(&mut d, &wire);
        assert_eq!(got, vec![Ok(Frame { seq: 513, msg })]);
        assert_eq!(d.stats().frames, 1);
    }

    #[test]
    fn a_flipped_bit_is_caught_and_the_next_frame_still_arrives() {
        let mut out = [0u8; MAX_WIRE];
        let a = encode(1, &ToFc::Arm, &mut out).unwrap().to_vec();
        let b = encode(2, &ToFc::Disarm, &mut out).unwrap().to_vec();
        for bit in 0..(a.len() - 1) * 8 {
            let mut bad = a.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let mut stream = bad;
            stream.extend_from_slice(&b);
            let mut d = Decoder::new();
            let got = feed::<ToFc>(&mut d, &stream);
            assert!(
                got.iter()
                    .all(|r| r.as_ref().map(|f| f.seq == 2).unwrap_or(true)),
                "bit {bit}: corrupted frame accepted: {got:?}"
            );
            assert_eq!(
                got.last(),
                Some(&Ok(Frame {
                    seq: 2,
                    msg: ToFc::Disarm
                })),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn refuses_other_versions_and_overlong_runs() {
        let mut out = [0u8; MAX_WIRE];
        let wire = encode(9, &ToFc::Arm, &mut out).unwrap().to_vec();
        let mut raw = [0u8; MAX_FRAME];
        let n = cobs::decode(&wire[..wire.len() - 1], &mut raw).unwrap();
        raw[0] = 7;
        let crc = crc32c(&raw[..n - 4]);
        raw[n - 4..n].copy_from_slice(&crc.to_le_bytes());
        let mut st = [0u8; MAX_WIRE];
        let m = cobs::encode(&raw[..n], &mut st).unwrap();
        assert_eq!(decode::<ToFc>(&st[..m]), Err(FrameError::Version(7)));

        let mut d = Decoder::new();
        let junk = [0x55u8; 3 * MAX_WIRE];
        assert!(feed::<FromFc>(&mut d, &junk).is_empty());
        assert_eq!(d.push::<FromFc>(0), Some(Err(FrameError::TooLong)));
        assert_eq!(
            feed::<ToFc>(&mut d, &wire),
            vec![Ok(Frame {
                seq: 9,
                msg: ToFc::Arm
            })]
        );
    }
}
