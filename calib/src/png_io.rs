//! Reading calibration images and stereo pairs as 8-bit grayscale: PNG (8-bit
//! grayscale) and JPEG (any colour JPEG, converted to luma, as cameras write them),
//! with errors that name the file.

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

/// Whether a file name is one of the image types [`read_gray8`] reads.
pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["png", "jpg", "jpeg"].contains(&e.to_ascii_lowercase().as_str()))
}

/// Read an image as 8-bit grayscale: (pixels row-major, width, height). PNGs must
/// be 8-bit grayscale; JPEGs (`.jpg`, `.jpeg`) are converted to luma.
pub fn read_gray8(path: &Path) -> Result<(Vec<u8>, usize, usize), PngError> {
    let jpeg = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg"));
    if jpeg {
        return read_jpeg(path);
    }
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

/// Read a JPEG as luma.
fn read_jpeg(path: &Path) -> Result<(Vec<u8>, usize, usize), PngError> {
    use zune_jpeg::zune_core::bytestream::ZCursor;
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;
    let p = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| PngError::Open {
        path: p.clone(),
        reason: e.to_string(),
    })?;
    let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::Luma);
    let mut dec = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(&bytes), options);
    dec.decode_headers().map_err(|e| PngError::Decode {
        path: p.clone(),
        reason: format!("JPEG: {e:?}"),
    })?;
    let (w, h) = dec.dimensions().ok_or_else(|| PngError::Decode {
        path: p.clone(),
        reason: "JPEG without dimensions".into(),
    })?;
    let data = dec.decode().map_err(|e| PngError::Decode {
        path: p.clone(),
        reason: format!("JPEG: {e:?}"),
    })?;
    if data.len() != w * h {
        return Err(PngError::Format {
            path: p,
            kind: format!("a JPEG that decoded to {} bytes for {w}x{h}", data.len()),
        });
    }
    Ok((data, w, h))
}
