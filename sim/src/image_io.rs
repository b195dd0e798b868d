//! PNG output for rendered frames, so that a person can look at what the twin sees.

use crate::render::StereoFrame;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use thiserror::Error;

/// Why an image could not be written.
#[derive(Debug, Error)]
pub enum ImageError {
    /// File system error.
    #[error("cannot write {path}: {reason}")]
    Io { path: String, reason: String },
    /// Buffer and size disagree.
    #[error("image buffer of {len} values does not match {width}x{height}")]
    Size {
        len: usize,
        width: usize,
        height: usize,
    },
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> ImageError {
    ImageError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn write_png(
    path: &Path,
    width: usize,
    height: usize,
    depth: png::BitDepth,
    bytes: &[u8],
) -> Result<(), ImageError> {
    let file = File::create(path).map_err(|e| io_err(path, e))?;
    let mut enc = png::Encoder::new(BufWriter::new(file), width as u32, height as u32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(depth);
    let mut w = enc.write_header().map_err(|e| io_err(path, e))?;
    w.write_image_data(bytes).map_err(|e| io_err(path, e))?;
    w.finish().map_err(|e| io_err(path, e))
}

/// Write an 8-bit grayscale PNG.
pub fn write_gray8(
    path: &Path,
    width: usize,
    height: usize,
    data: &[u8],
) -> Result<(), ImageError> {
    if data.len() != width * height {
        return Err(ImageError::Size {
            len: data.len(),
            width,
            height,
        });
    }
    write_png(path, width, height, png::BitDepth::Eight, data)
}

/// Write depth (m) as a 16-bit PNG in millimetres (0 = invalid), the common format of depth datasets.
pub fn write_depth_mm(
    path: &Path,
    width: usize,
    height: usize,
    depth: &[f32],
) -> Result<(), ImageError> {
    if depth.len() != width * height {
        return Err(ImageError::Size {
            len: depth.len(),
            width,
            height,
        });
    }
    let mut bytes = Vec::with_capacity(depth.len() * 2);
    for &z in depth {
        let mm = if z.is_finite() && z > 0.0 {
            (z * 1000.0).round().min(65535.0) as u16
        } else {
            0
        };
        bytes.extend_from_slice(&mm.to_be_bytes());
    }
    write_png(path, width, height, png::BitDepth::Sixteen, &bytes)
}

/// Depth as an 8-bit picture for people: near is bright, `max_depth` and beyond are black.
pub fn depth_to_gray(depth: &[f32], max_depth: f32) -> Vec<u8> {
    depth
        .iter()
        .map(|&z| {
            if z.is_finite() && z > 0.0 {
                (255.0 * (1.0 - (z / max_depth).min(1.0))).round() as u8
            } else {
                0
            }
        })
        .collect()
}

/// Write `left.png`, `right.png`, `depth.png` (visual) and `depth_mm.png` (16-bit) into `dir`.
pub fn write_frame(dir: &Path, frame: &StereoFrame, max_depth: f32) -> Result<(), ImageError> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let (w, h) = (frame.width, frame.height);
    write_gray8(&dir.join("left.png"), w, h, &frame.left)?;
    write_gray8(&dir.join("right.png"), w, h, &frame.right)?;
    write_gray8(
        &dir.join("depth.png"),
        w,
        h,
        &depth_to_gray(&frame.depth, max_depth),
    )?;
    write_depth_mm(&dir.join("depth_mm.png"), w, h, &frame.depth)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_readable_pngs_and_refuses_wrong_sizes() {
        let dir = std::env::temp_dir().join(format!("sim-png-{}", std::process::id()));
        let mut f = StereoFrame::new(4, 3);
        f.left = (0..12).collect();
        f.depth = vec![1.5; 12];
        write_frame(&dir, &f, 10.0).unwrap();
        let dec = png::Decoder::new(std::io::BufReader::new(
            File::open(dir.join("depth_mm.png")).unwrap(),
        ));
        let mut r = dec.read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size().unwrap()];
        r.next_frame(&mut buf).unwrap();
        assert_eq!(u16::from_be_bytes([buf[0], buf[1]]), 1500);
        assert!(write_gray8(&dir.join("x.png"), 5, 5, &[0; 3]).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
