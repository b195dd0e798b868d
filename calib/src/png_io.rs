//! Reading calibration images and stereo pairs as 8-bit grayscale: PNG (8-bit
//! grayscale, or 8-bit colour converted to luma, as stereo data sets ship their
//! pairs) and JPEG (any colour JPEG, converted to luma, as cameras write them),
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
    #[error("{path} is {kind}; need 8-bit grayscale or colour")]
    Format { path: String, kind: String },
}

/// Whether a file name is one of the image types [`read_gray8`] reads.
pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["png", "jpg", "jpeg"].contains(&e.to_ascii_lowercase().as_str()))
}

/// Read an image as 8-bit grayscale: (pixels row-major, width, height). PNGs must
/// have 8-bit samples (palette and 1-4 bit grayscale are expanded to 8 bits); colour
/// PNGs and JPEGs (`.jpg`, `.jpeg`) are converted to luma (ITU-R BT.601 weights, as
/// OpenCV's `cvtColor` and its grayscale read use), alpha is dropped.
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
    let mut dec = png::Decoder::new(std::io::BufReader::new(file));
    dec.set_transformations(png::Transformations::EXPAND);
    let mut r = dec.read_info().map_err(|e| decode(&e))?;
    let info = r.info();
    let (w, h) = (info.width as usize, info.height as usize);
    let mut buf = vec![
        0;
        r.output_buffer_size()
            .ok_or_else(|| decode(&"image too large"))?
    ];
    let frame = r.next_frame(&mut buf).map_err(|e| decode(&e))?;
    if frame.bit_depth != png::BitDepth::Eight {
        return Err(PngError::Format {
            path: p.clone(),
            kind: format!("{:?} {:?}", frame.color_type, frame.bit_depth),
        });
    }
    let channels = match frame.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => {
            return Err(PngError::Format {
                path: p.clone(),
                kind: format!("{other:?} {:?}", frame.bit_depth),
            });
        }
    };
    let line = frame.line_size;
    let gray = (0..h)
        .flat_map(|y| {
            let row = &buf[y * line..y * line + w * channels];
            row.chunks_exact(channels).map(|px| luma(px, channels))
        })
        .collect();
    Ok((gray, w, h))
}

/// Luma of one pixel of `channels` samples (gray, gray+alpha, RGB, RGBA).
fn luma(px: &[u8], channels: usize) -> u8 {
    if channels < 3 {
        return px[0];
    }
    let (r, g, b) = (px[0] as u32, px[1] as u32, px[2] as u32);
    ((299 * r + 587 * g + 114 * b + 500) / 1000) as u8
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, w: u32, h: u32, color: png::ColorType, data: &[u8]) {
        let file = std::fs::File::create(path).unwrap();
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header().unwrap().write_image_data(data).unwrap();
    }

    #[test]
    fn colour_pngs_are_read_as_luma_and_16_bit_ones_refused() {
        let dir = std::env::temp_dir().join(format!("png-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Pure red, green, blue and white: BT.601 luma 76, 150, 29, 255.
        let rgb = [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255];
        let p = dir.join("rgb.png");
        write_png(&p, 4, 1, png::ColorType::Rgb, &rgb);
        assert_eq!(read_gray8(&p).unwrap(), (vec![76, 150, 29, 255], 4, 1));
        let rgba: Vec<u8> = rgb.chunks(3).flat_map(|c| [c[0], c[1], c[2], 7]).collect();
        let p = dir.join("rgba.png");
        write_png(&p, 2, 2, png::ColorType::Rgba, &rgba);
        assert_eq!(read_gray8(&p).unwrap(), (vec![76, 150, 29, 255], 2, 2));
        let p = dir.join("gray16.png");
        let file = std::fs::File::create(&p).unwrap();
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), 2, 1);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Sixteen);
        enc.write_header()
            .unwrap()
            .write_image_data(&[0, 1, 2, 3])
            .unwrap();
        let err = read_gray8(&p).unwrap_err().to_string();
        assert!(err.contains("Sixteen"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
