//! The wire encoding of every message: a fixed header and a kind-specific body,
//! little-endian throughout, so that a client in any language can decode it
//! (the layout is tabulated in `agent/bus/README.md`).

use thiserror::Error;

/// First four bytes of every message.
pub const MAGIC: [u8; 4] = *b"ONBD";
/// Schema version this build writes and accepts.
pub const SCHEMA_VERSION: u16 = 1;

/// The header every message carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    /// Sequence number from the publisher (gaps = dropped messages).
    pub seq: u64,
    /// Capture time in nanoseconds (sender's clock: UNIX time on the robot,
    /// simulated time in the twin). Derived messages keep their source's stamp.
    pub stamp_ns: u64,
    /// Coordinate frame or sensor the data refers to (e.g. `camera_left`).
    pub frame_id: String,
}

/// Why bytes could not be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the layout needs.
    #[error("message truncated: {need} bytes needed, {got} present")]
    Truncated { need: usize, got: usize },
    /// Not a message of this protocol.
    #[error("bad magic {0:02x?} (expected \"ONBD\")")]
    Magic([u8; 4]),
    /// Written by another schema version.
    #[error("schema version {got}, this build reads {want}")]
    Version { got: u16, want: u16 },
    /// Another message kind than the topic carries.
    #[error("message kind {got} where {want} ({name}) was expected")]
    Kind {
        got: u16,
        want: u16,
        name: &'static str,
    },
    /// Fields that contradict each other (e.g. image size and byte count).
    #[error("malformed {name}: {reason}")]
    Malformed { name: &'static str, reason: String },
    /// Bytes left over after the body.
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
}

/// Reads little-endian fields with bounds checks.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Read from the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated {
            need: usize::MAX,
            got: self.buf.len(),
        })?;
        if end > self.buf.len() {
            return Err(DecodeError::Truncated {
                need: end,
                got: self.buf.len(),
            });
        }
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    /// A `u8`.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }
    /// A `u16`.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    /// A `u32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    /// A `u64`.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// An `f32`.
    pub fn f32(&mut self) -> Result<f32, DecodeError> {
        Ok(f32::from_le_bytes(self.array()?))
    }
    /// An `f64`.
    pub fn f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
}

/// Writes little-endian fields.
#[derive(Debug, Default)]
pub struct Writer {
    /// The bytes so far.
    pub buf: Vec<u8>,
}

impl Writer {
    /// A `u8`.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    /// A `u16`.
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// A `u32`.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// A `u64`.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// An `f32`.
    pub fn f32(&mut self, v: f32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// An `f64`.
    pub fn f64(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Raw bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
}

/// A message type with a kind number and a body layout.
pub trait Message: Sized {
    /// Kind number in the header.
    const KIND: u16;
    /// Name for errors and documentation.
    const NAME: &'static str;
    /// Append the body.
    fn write_body(&self, w: &mut Writer);
    /// Read the body.
    fn read_body(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
}

/// Encode a message with its header.
pub fn encode<M: Message>(h: &Header, m: &M) -> Vec<u8> {
    let mut w = Writer::default();
    w.bytes(&MAGIC);
    w.u16(SCHEMA_VERSION);
    w.u16(M::KIND);
    w.u64(h.seq);
    w.u64(h.stamp_ns);
    let id = h.frame_id.as_bytes();
    let n = id.len().min(u16::MAX as usize);
    w.u16(n as u16);
    w.bytes(&id[..n]);
    m.write_body(&mut w);
    w.buf
}

/// Decode the header of any message: its kind and header, and where the body
/// starts. Used where bytes are handled without knowing their type (recording).
pub fn decode_header(bytes: &[u8]) -> Result<(u16, Header, usize), DecodeError> {
    let mut r = Reader::new(bytes);
    let magic: [u8; 4] = r.array()?;
    if magic != MAGIC {
        return Err(DecodeError::Magic(magic));
    }
    let version = r.u16()?;
    if version != SCHEMA_VERSION {
        return Err(DecodeError::Version {
            got: version,
            want: SCHEMA_VERSION,
        });
    }
    let kind = r.u16()?;
    let seq = r.u64()?;
    let stamp_ns = r.u64()?;
    let n = r.u16()? as usize;
    let frame_id = String::from_utf8(r.bytes(n)?.to_vec()).map_err(|_| DecodeError::Malformed {
        name: "header",
        reason: "frame_id is not UTF-8".into(),
    })?;
    Ok((
        kind,
        Header {
            seq,
            stamp_ns,
            frame_id,
        },
        r.pos,
    ))
}

/// Decode a message of type `M`, checking magic, version, kind and sizes.
pub fn decode<M: Message>(bytes: &[u8]) -> Result<(Header, M), DecodeError> {
    let (kind, header, body_at) = decode_header(bytes)?;
    if kind != M::KIND {
        return Err(DecodeError::Kind {
            got: kind,
            want: M::KIND,
            name: M::NAME,
        });
    }
    let mut r = Reader {
        buf: bytes,
        pos: body_at,
    };
    let m = M::read_body(&mut r)?;
    if r.remaining() != 0 {
        return Err(DecodeError::Trailing(r.remaining()));
    }
    Ok((header, m))
}
