//! Scoring disparity maps against ground truth, and the real stereo pair with
//! ground truth that the benchmark and the tests compare against OpenCV on:
//! Middlebury's "Aloe" (2006 data set), as OpenCV's samples ship it (Debian
//! `opencv-doc`: `aloeL.jpg`, `aloeR.jpg`, `aloeGT.png`, full size 1282x1110,
//! ground truth in whole pixels, 0 = unknown).

use crate::image::GrayImage;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Where Debian's `opencv-doc` puts OpenCV's sample images.
pub const OPENCV_SAMPLES: &str = "/usr/share/doc/opencv-doc/examples/data";

/// Accuracy of a disparity map over the pixels with ground truth.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Score {
    /// Share of valid estimates more than 1 px off.
    pub bad1: f64,
    /// Share of valid estimates more than 2 px off.
    pub bad2: f64,
    /// Mean absolute error of valid estimates (px).
    pub epe: f64,
    /// Share of pixels with ground truth that have a valid estimate.
    pub density: f64,
}

impl Score {
    /// Mean of several scores (one per frame).
    pub fn mean(scores: &[Score]) -> Score {
        let n = scores.len().max(1) as f64;
        let m = |f: fn(&Score) -> f64| scores.iter().map(f).sum::<f64>() / n;
        Score {
            bad1: m(|s| s.bad1),
            bad2: m(|s| s.bad2),
            epe: m(|s| s.epe),
            density: m(|s| s.density),
        }
    }
}

/// Score `disp`/`valid` (row-major, `width` wide) against `gt` (NaN where unknown).
/// Pixels within `margin` of the border, and those whose match would fall off the
/// right image, are not counted.
pub fn score(disp: &[f32], valid: &[bool], gt: &[f32], width: usize, margin: usize) -> Score {
    let h = gt.len() / width.max(1);
    let (mut b1, mut b2, mut epe, mut n, mut total) = (0usize, 0usize, 0.0, 0usize, 0usize);
    for y in margin..h.saturating_sub(margin) {
        for x in margin..width.saturating_sub(margin) {
            let i = y * width + x;
            let g = gt[i];
            if !g.is_finite() || g as usize + 1 >= x {
                continue;
            }
            total += 1;
            if valid[i] {
                n += 1;
                let e = (disp[i] - g).abs() as f64;
                epe += e;
                b1 += (e > 1.0) as usize;
                b2 += (e > 2.0) as usize;
            }
        }
    }
    let n1 = n.max(1) as f64;
    Score {
        bad1: b1 as f64 / n1,
        bad2: b2 as f64 / n1,
        epe: epe / n1,
        density: n as f64 / total.max(1) as f64,
    }
}

/// Why the real pair could not be loaded.
#[derive(Debug, Error)]
pub enum EvalError {
    /// A file is missing or unreadable.
    #[error("{0} (install Debian's opencv-doc for OpenCV's sample images)")]
    Read(#[from] calib::png_io::PngError),
    /// The three images disagree in size.
    #[error("{path}: {w}x{h}, but the left image is {lw}x{lh}")]
    Size {
        path: PathBuf,
        w: usize,
        h: usize,
        lw: usize,
        lh: usize,
    },
    /// Not a valid image after downscaling.
    #[error(transparent)]
    Image(#[from] crate::image::StereoError),
}

/// A rectified real pair with ground-truth disparity (NaN = unknown).
pub struct RealPair {
    /// Left image.
    pub left: GrayImage,
    /// Right image.
    pub right: GrayImage,
    /// Ground-truth disparity of the left image, in pixels at this size.
    pub gt: Vec<f32>,
}

/// Average `scale` x `scale` blocks (rounded), dropping a partial last row/column.
fn box_downscale(data: &[u8], w: usize, h: usize, scale: usize) -> (Vec<u8>, usize, usize) {
    let (ow, oh) = (w / scale, h / scale);
    let n = (scale * scale) as u32;
    let out = (0..oh)
        .flat_map(|y| (0..ow).map(move |x| (x, y)))
        .map(|(x, y)| {
            let mut s = 0u32;
            for yy in y * scale..(y + 1) * scale {
                for xx in x * scale..(x + 1) * scale {
                    s += data[yy * w + xx] as u32;
                }
            }
            ((s + n / 2) / n) as u8
        })
        .collect();
    (out, ow, oh)
}

/// Middlebury's Aloe from `dir` (OpenCV's sample folder), box-downscaled by
/// `scale` (1, 2 or 4: 1282x1110, 641x555, 320x277); the ground truth is sampled
/// at each block's top-left pixel and divided by `scale`.
pub fn aloe(dir: &Path, scale: usize) -> Result<RealPair, EvalError> {
    let scale = scale.max(1);
    let read = |name: &str| calib::png_io::read_gray8(&dir.join(name));
    let (l, w, h) = read("aloeL.jpg")?;
    let (r, rw, rh) = read("aloeR.jpg")?;
    let (g, gw, gh) = read("aloeGT.png")?;
    for (name, sw, sh) in [("aloeR.jpg", rw, rh), ("aloeGT.png", gw, gh)] {
        if (sw, sh) != (w, h) {
            return Err(EvalError::Size {
                path: dir.join(name),
                w: sw,
                h: sh,
                lw: w,
                lh: h,
            });
        }
    }
    let (ld, ow, oh) = box_downscale(&l, w, h, scale);
    let (rd, _, _) = box_downscale(&r, w, h, scale);
    let gt = (0..oh)
        .flat_map(|y| (0..ow).map(move |x| (x, y)))
        .map(|(x, y)| match g[y * scale * w + x * scale] {
            0 => f32::NAN,
            v => v as f32 / scale as f32,
        })
        .collect();
    Ok(RealPair {
        left: GrayImage::new(ow, oh, ld, "left")?,
        right: GrayImage::new(ow, oh, rd, "right")?,
        gt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_count_only_pixels_with_ground_truth() {
        let w = 10;
        let gt: Vec<f32> = (0..w * 10)
            .map(|i| if i % w == 7 { f32::NAN } else { 2.0 })
            .collect();
        let mut disp = vec![2.0f32; w * 10];
        disp[5 * w + 5] = 4.5; // 2.5 px off
        disp[5 * w + 6] = 3.5; // 1.5 px off
        let mut valid = vec![true; w * 10];
        valid[4 * w + 4] = false;
        let s = score(&disp, &valid, &gt, w, 1);
        // Counted: rows 1..9, columns 4..9 except 7 (x must exceed gt + 1 = 3) -> 8 x 4.
        assert!((s.density - 31.0 / 32.0).abs() < 1e-12, "{s:?}");
        assert!((s.bad2 - 1.0 / 31.0).abs() < 1e-12);
        assert!((s.bad1 - 2.0 / 31.0).abs() < 1e-12);
        assert!((s.epe - 4.0 / 31.0).abs() < 1e-9);
    }

    #[test]
    fn downscaling_averages_blocks() {
        let data = [0u8, 2, 10, 10, 4, 6, 10, 11];
        let (d, w, h) = box_downscale(&data, 4, 2, 2);
        assert_eq!((w, h), (2, 1));
        assert_eq!(d, vec![3, 10]);
    }
}
