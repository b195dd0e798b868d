//! Consistent-overhead byte stuffing: removes every zero byte from a frame so
//! that a single zero can delimit frames on the wire, and a receiver that lost
//! bytes finds the next frame at the next zero.

/// Why a stuffed block could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CobsError {
    /// A zero byte inside the stuffed block.
    ZeroInBlock,
    /// A code byte points past the end of the block.
    Truncated,
    /// The output buffer is too small.
    Overflow,
}

/// Largest encoded size of `n` bytes (without the delimiter).
pub const fn max_encoded_len(n: usize) -> usize {
    n + n / 254 + 1
}

/// Stuffs `src` into `dst`; returns the encoded length (no delimiter written).
pub fn encode(src: &[u8], dst: &mut [u8]) -> Result<usize, CobsError> {
    if dst.len() < max_encoded_len(src.len()) {
        return Err(CobsError::Overflow);
    }
    let mut code_at = 0;
    let mut out = 1;
    let mut code: u8 = 1;
    for &b in src {
        if b == 0 {
            dst[code_at] = code;
            code_at = out;
            out += 1;
            code = 1;
        } else {
            dst[out] = b;
            out += 1;
            code += 1;
            if code == 0xFF {
                dst[code_at] = code;
                code_at = out;
                out += 1;
                code = 1;
            }
        }
    }
    dst[code_at] = code;
    Ok(out)
}

/// Unstuffs `src` (one block, without its delimiter) into `dst`; returns the
/// decoded length.
pub fn decode(src: &[u8], dst: &mut [u8]) -> Result<usize, CobsError> {
    let mut i = 0;
    let mut out = 0;
    while i < src.len() {
        let code = src[i];
        if code == 0 {
            return Err(CobsError::ZeroInBlock);
        }
        let run = code as usize - 1;
        let end = i + 1 + run;
        if end > src.len() {
            return Err(CobsError::Truncated);
        }
        if out + run > dst.len() {
            return Err(CobsError::Overflow);
        }
        for &b in &src[i + 1..end] {
            if b == 0 {
                return Err(CobsError::ZeroInBlock);
            }
            dst[out] = b;
            out += 1;
        }
        i = end;
        // A code below 0xFF stands for "run, then a zero", except at the very end.
        if code != 0xFF && i < src.len() {
            if out >= dst.len() {
                return Err(CobsError::Overflow);
            }
            dst[out] = 0;
            out += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(data: &[u8]) {
        let mut enc = [0u8; 1100];
        let n = encode(data, &mut enc).unwrap();
        assert!(!enc[..n].contains(&0), "stuffed block holds a zero");
        assert!(n <= max_encoded_len(data.len()));
        let mut dec = [0u8; 1100];
        let m = decode(&enc[..n], &mut dec).unwrap();
        assert_eq!(&dec[..m], data);
    }

    #[test]
    fn round_trips_edge_cases() {
        round_trip(&[]);
        round_trip(&[0]);
        round_trip(&[0, 0]);
        round_trip(&[1, 2, 0, 3]);
        round_trip(&[7; 253]);
        round_trip(&[7; 254]);
        round_trip(&[7; 255]);
        round_trip(&[7; 600]);
        let mut v = [0u8; 520];
        for (i, b) in v.iter_mut().enumerate() {
            *b = (i % 256) as u8;
        }
        round_trip(&v);
    }

    #[test]
    fn known_encodings() {
        let mut enc = [0u8; 16];
        let n = encode(&[0x11, 0x22, 0x00, 0x33], &mut enc).unwrap();
        assert_eq!(&enc[..n], &[0x03, 0x11, 0x22, 0x02, 0x33]);
        let n = encode(&[0x00], &mut enc).unwrap();
        assert_eq!(&enc[..n], &[0x01, 0x01]);
    }

    #[test]
    fn refuses_bad_blocks() {
        let mut dec = [0u8; 16];
        assert_eq!(decode(&[0x05, 1, 2], &mut dec), Err(CobsError::Truncated));
        assert_eq!(decode(&[0x03, 1, 0], &mut dec), Err(CobsError::ZeroInBlock));
        assert_eq!(decode(&[0x10; 40], &mut [0u8; 4]), Err(CobsError::Overflow));
    }
}
