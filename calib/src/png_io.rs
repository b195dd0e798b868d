//! Reading 8-bit grayscale PNGs (calibration images, stereo pairs) with errors that
//! name the file.

use std::path::Path;
use thiserror::Error;

/// Why an image could not be read.
#[derive(Debug, Error)]
pub enum PngError {
    /// The file could not be opened.
    #[error("cannot open {path}: {reason}")]
    Open { path: String, reason: String },
    /// Not a PNG, or a corrupt one.
    #[error("{path} is not a readable PNG: {reason}")]
    Decode { path: String, reason: String },
    /// A PNG of another colour type or bit depth.
    #[error("{path} is {kind}; need 8-bit grayscale")]
    Format { path: String, kind: String },
}

/// Read an 8-bit grayscale PNG: (pixels row-major, width, height).
pub fn read_gray8(path: &Path) -> Result<(Vec<u8>, usize, usize), PngError> {
    let p = path.display().to_string();
    let decode = |e: &dyn std::fmt::Display| PngError::Decode {
        path: p.clone(),
        reason: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(|e| PngError::Open {
        path: p.clone(),
        reason: e.to_string(),
    })?;
    let mut r = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .map_err(|e| decode(&e))?;
    let info = r.info();
    if info.color_type != png::ColorType::Grayscale || info.bit_depth != png::BitDepth::Eight {
        return Err(PngError::Format {
            path: p.clone(),
            kind: format!("{:?} {:?}", info.color_type, info.bit_depth),
        });
    }
    let (w, h) = (info.width as usize, info.height as usize);
    let mut buf = vec![
        0;
        r.output_buffer_size()
            .ok_or_else(|| decode(&"image too large"))?
    ];
    r.next_frame(&mut buf).map_err(|e| decode(&e))?;
    buf.truncate(w * h);
    Ok((buf, w, h))
}
