//! Scoring disparity maps against ground truth, and the real stereo pairs with
//! ground truth that the benchmark and the tests compare against OpenCV on:
//! Middlebury's "Aloe" (2006 data set; Scharstein and Pal, CVPR 2007) as
//! OpenCV's samples ship it (Debian `opencv-doc`), Middlebury's "Motorcycle"
//! (2014 data set; Scharstein et al., GCPR 2014) as scikit-image ships it, and any
//! pair in Middlebury's own layout (`im0.png`, `im1.png`, `disp0.pfm`,
//! `calib.txt`) that a user points the bench at.

use crate::image::GrayImage;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Where Debian's `opencv-doc` puts OpenCV's sample images.
pub const OPENCV_SAMPLES: &str = "/usr/share/doc/opencv-doc/examples/data";

/// Which pixels a score counts: those with ground truth, at least `margin` from
/// the border, in columns `first_col..` (the columns every compared matcher can
/// answer: OpenCV leaves the first `minDisparity + numDisparities` empty), and
/// whose match stays inside the right image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Border rows and columns left out (the matching window's half width).
    pub margin: usize,
    /// First column counted.
    pub first_col: usize,
}

impl Region {
    /// The columns a matcher searching `min_disp..min_disp + max_disp` can answer.
    pub fn for_range(margin: usize, min_disp: usize, max_disp: usize) -> Region {
        Region {
            margin,
            first_col: margin.max(min_disp + max_disp),
        }
    }
}

/// Accuracy of a disparity map over a [`Region`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Score {
    /// Share of answers more than 1 px off.
    pub bad1: f64,
    /// Share of answers more than 2 px off.
    pub bad2: f64,
    /// Mean absolute error of the answers (px).
    pub epe: f64,
    /// Share of the counted pixels that have an answer.
    pub density: f64,
    /// Share of the counted pixels that have no answer or one more than 2 px off:
    /// a missing answer counted as an error.
    pub bad2_all: f64,
    /// Pixels counted.
    pub pixels: usize,
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
            bad2_all: m(|s| s.bad2_all),
            pixels: scores.iter().map(|s| s.pixels).sum(),
        }
    }
}

/// Score `disp`/`valid` (row-major, `width` wide) against `gt` (NaN where
/// unknown) over `region`.
pub fn score(disp: &[f32], valid: &[bool], gt: &[f32], width: usize, region: Region) -> Score {
    let h = gt.len() / width.max(1);
    let (mut b1, mut b2, mut epe, mut n, mut total) = (0usize, 0usize, 0.0, 0usize, 0usize);
    let m = region.margin;
    for y in m..h.saturating_sub(m) {
        for x in region.first_col.max(m)..width.saturating_sub(m) {
            let i = y * width + x;
            let g = gt[i];
            if !g.is_finite() || g + 1.0 >= x as f32 {
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
    let t1 = total.max(1) as f64;
    Score {
        bad1: b1 as f64 / n1,
        bad2: b2 as f64 / n1,
        epe: epe / n1,
        density: n as f64 / t1,
        bad2_all: (b2 + total - n) as f64 / t1,
        pixels: total,
    }
}

/// Scores of two disparity maps over the pixels both answer (each map's
/// `density` is then the share of the region both answer).
pub fn score_both(
    a: (&[f32], &[bool]),
    b: (&[f32], &[bool]),
    gt: &[f32],
    width: usize,
    region: Region,
) -> (Score, Score) {
    let both: Vec<bool> = a.1.iter().zip(b.1).map(|(&x, &y)| x && y).collect();
    (
        score(a.0, &both, gt, width, region),
        score(b.0, &both, gt, width, region),
    )
}

/// Why a real pair could not be loaded.
#[derive(Debug, Error)]
pub enum EvalError {
    /// An image is missing or unreadable.
    #[error("{0}")]
    Read(#[from] calib::png_io::PngError),
    /// A ground-truth or calibration file is missing or unreadable.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A ground-truth file is not in the format its name says.
    #[error("{path}: {why}")]
    Format { path: PathBuf, why: String },
    /// The images and the ground truth disagree in size.
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

/// A rectified real pair with ground-truth disparity (NaN = unknown) and the
/// disparity range to search it with.
pub struct RealPair {
    /// What it is and at which size, for tables.
    pub name: String,
    /// Left image.
    pub left: GrayImage,
    /// Right image.
    pub right: GrayImage,
    /// Ground-truth disparity of the left image, in pixels at this size.
    pub gt: Vec<f32>,
    /// Smallest disparity searched.
    pub min_disp: usize,
    /// Disparities searched from `min_disp` (a multiple of 16).
    pub max_disp: usize,
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

/// A full-size pair and ground truth (`gt` NaN where unknown) brought to
/// `1/scale`: images box-averaged, ground truth sampled at each block's top-left
/// pixel and divided by `scale`.
#[allow(clippy::too_many_arguments)]
fn assemble(
    name: String,
    (l, r): (&[u8], &[u8]),
    gt: &[f32],
    (w, h): (usize, usize),
    scale: usize,
    min_disp: usize,
    max_disp: usize,
) -> Result<RealPair, EvalError> {
    let scale = scale.max(1);
    let (ld, ow, oh) = box_downscale(l, w, h, scale);
    let (rd, _, _) = box_downscale(r, w, h, scale);
    let gt = (0..oh)
        .flat_map(|y| (0..ow).map(move |x| (x, y)))
        .map(|(x, y)| gt[y * scale * w + x * scale] / scale as f32)
        .collect();
    Ok(RealPair {
        name,
        left: GrayImage::new(ow, oh, ld, "left")?,
        right: GrayImage::new(ow, oh, rd, "right")?,
        gt,
        min_disp,
        max_disp,
    })
}

fn read_pair(
    dir: &Path,
    left: &str,
    right: &str,
) -> Result<(Vec<u8>, Vec<u8>, usize, usize), EvalError> {
    let (l, w, h) = calib::png_io::read_gray8(&dir.join(left))?;
    let (r, rw, rh) = calib::png_io::read_gray8(&dir.join(right))?;
    same_size(&dir.join(right), (rw, rh), (w, h))?;
    Ok((l, r, w, h))
}

fn same_size(
    path: &Path,
    (w, h): (usize, usize),
    (lw, lh): (usize, usize),
) -> Result<(), EvalError> {
    if (w, h) != (lw, lh) {
        return Err(EvalError::Size {
            path: path.to_path_buf(),
            w,
            h,
            lw,
            lh,
        });
    }
    Ok(())
}

/// Middlebury's Aloe (2006 data set) from `dir` (OpenCV's sample folder, Debian
/// `opencv-doc`), at `1/scale` (1, 2 or 4: 1282x1110, 641x555, 320x277) with
/// `256 / scale` disparities. Its ground truth is in whole pixels.
pub fn aloe(dir: &Path, scale: usize) -> Result<RealPair, EvalError> {
    let scale = scale.max(1);
    let (l, r, w, h) = read_pair(dir, "aloeL.jpg", "aloeR.jpg")?;
    let gt_path = dir.join("aloeGT.png");
    let (g, gw, gh) = calib::png_io::read_gray8(&gt_path)?;
    same_size(&gt_path, (gw, gh), (w, h))?;
    let gt: Vec<f32> = g
        .iter()
        .map(|&v| if v == 0 { f32::NAN } else { v as f32 })
        .collect();
    let (ow, oh) = (w / scale, h / scale);
    assemble(
        format!("Middlebury Aloe (opencv-doc) {ow}x{oh}"),
        (&l, &r),
        &gt,
        (w, h),
        scale,
        0,
        (256 / scale).max(16),
    )
}

/// Where scikit-image keeps its sample data (it ships Middlebury's 2014
/// "Motorcycle" pair with ground truth), asked of `python`; None when it is not
/// installed (`pip install scikit-image`).
pub fn skimage_data(python: &str) -> Option<PathBuf> {
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import os, skimage.data; print(os.path.dirname(skimage.data.__file__))",
        ])
        .output()
        .ok()?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && dir.join("motorcycle_disp.npz").exists()).then_some(dir)
}

/// Middlebury's "Motorcycle" (2014 data set) from `dir` (scikit-image's data
/// folder): 741x500 with 64 disparities at `scale` 1, 370x250 with 32 at 2.
/// Its ground truth is sub-pixel (`motorcycle_disp.npz`, inf = unknown).
#[cfg(feature = "bench")]
pub fn motorcycle(dir: &Path, scale: usize) -> Result<RealPair, EvalError> {
    let scale = scale.max(1);
    let (l, r, w, h) = read_pair(dir, "motorcycle_left.png", "motorcycle_right.png")?;
    let gt_path = dir.join("motorcycle_disp.npz");
    let (gt, gw, gh) = read_npz_f32(&gt_path)?;
    same_size(&gt_path, (gw, gh), (w, h))?;
    let (ow, oh) = (w / scale, h / scale);
    assemble(
        format!("Middlebury Motorcycle (scikit-image) {ow}x{oh}"),
        (&l, &r),
        &clean(gt),
        (w, h),
        scale,
        0,
        (64 / scale).max(16),
    )
}

/// A pair in Middlebury's layout (2014 and 2021 data sets, ETH3D's two-view
/// set): `im0.png`, `im1.png`, ground truth `disp0.pfm` (or `disp0GT.pfm`), and
/// `calib.txt` whose `ndisp` (and `vmin`, when given) set the range. Downscaled
/// by the smallest factor that brings `ndisp` to 256 or below.
pub fn middlebury(dir: &Path) -> Result<RealPair, EvalError> {
    let (l, r, w, h) = read_pair(dir, "im0.png", "im1.png")?;
    let gt_path = ["disp0.pfm", "disp0GT.pfm"]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.exists())
        .unwrap_or_else(|| dir.join("disp0.pfm"));
    let (gt, gw, gh) = read_pfm(&gt_path)?;
    same_size(&gt_path, (gw, gh), (w, h))?;
    let gt = clean(gt);
    let calib_path = dir.join("calib.txt");
    let text = std::fs::read_to_string(&calib_path).map_err(|source| EvalError::Io {
        path: calib_path.clone(),
        source,
    })?;
    let key = |k: &str| {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .find(|(name, _)| name.trim() == k)
            .and_then(|(_, v)| v.trim().parse::<f64>().ok())
    };
    let gt_max = gt
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0f32, f32::max) as f64;
    let ndisp = key("ndisp").unwrap_or(gt_max + 1.0).max(1.0);
    let vmin = key("vmin").unwrap_or(0.0).max(0.0);
    if !ndisp.is_finite() || ndisp > 16.0 * w as f64 || vmin >= ndisp {
        return Err(EvalError::Format {
            path: calib_path,
            why: format!(
                "ndisp {ndisp} and vmin {vmin} do not make a disparity range for a {w} px wide image"
            ),
        });
    }
    let scale = (ndisp / 256.0).ceil().max(1.0) as usize;
    // The range from vmin (whole pixels, at this size) to ndisp, in steps of 16.
    let min_disp = (vmin / scale as f64).floor() as usize;
    let span = (ndisp / scale as f64).ceil() as usize - min_disp;
    let max_disp = span.div_ceil(16).max(1) * 16;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string());
    let (ow, oh) = (w / scale, h / scale);
    assemble(
        format!("{name} {ow}x{oh}"),
        (&l, &r),
        &gt,
        (w, h),
        scale,
        min_disp,
        max_disp,
    )
}

/// Unknown ground truth (inf, NaN, zero or negative) as NaN.
fn clean(mut gt: Vec<f32>) -> Vec<f32> {
    for v in &mut gt {
        if !v.is_finite() || *v <= 0.0 {
            *v = f32::NAN;
        }
    }
    gt
}

/// A one-channel PFM (`Pf`): values row-major from the top row, width, height.
pub fn read_pfm(path: &Path) -> Result<(Vec<f32>, usize, usize), EvalError> {
    let bytes = std::fs::read(path).map_err(|source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |why: String| EvalError::Format {
        path: path.to_path_buf(),
        why,
    };
    // Three whitespace-separated header fields after the magic: "Pf", "W H", scale.
    let mut fields = Vec::new();
    let mut at = 0;
    while fields.len() < 4 {
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        let start = at;
        while at < bytes.len() && !bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        if start == at {
            return Err(bad("truncated PFM header".into()));
        }
        fields.push(String::from_utf8_lossy(&bytes[start..at]).into_owned());
    }
    // One whitespace byte ends the header (two for a CRLF line end).
    at += if bytes.get(at..at + 2) == Some(&b"\r\n"[..]) {
        2
    } else {
        1
    };
    if fields[0] != "Pf" {
        return Err(bad(format!(
            "starts with {:?}; a one-channel PFM starts with \"Pf\"",
            fields[0]
        )));
    }
    let num = |s: &str| {
        s.parse::<f64>()
            .map_err(|_| bad(format!("{s:?} is not a number")))
    };
    let (w, h, scale) = (num(&fields[1])?, num(&fields[2])?, num(&fields[3])?);
    if w < 1.0 || h < 1.0 || w.fract() != 0.0 || h.fract() != 0.0 || scale == 0.0 {
        return Err(bad(format!("size {w}x{h}, scale {scale}")));
    }
    let (w, h) = (w as usize, h as usize);
    let data = bytes.get(at..).unwrap_or_default();
    let need = w
        .checked_mul(h)
        .and_then(|n| n.checked_mul(4))
        .ok_or_else(|| bad(format!("size {w}x{h} is too large")))?;
    if data.len() < need {
        return Err(bad(format!(
            "{} data bytes for {w}x{h} (need {})",
            data.len(),
            w * h * 4
        )));
    }
    let little = scale < 0.0;
    let mut out = vec![0.0f32; w * h];
    // Rows are stored bottom to top.
    for (i, c) in data.chunks_exact(4).take(w * h).enumerate() {
        let b = [c[0], c[1], c[2], c[3]];
        let v = if little {
            f32::from_le_bytes(b)
        } else {
            f32::from_be_bytes(b)
        };
        let (y, x) = (i / w, i % w);
        out[(h - 1 - y) * w + x] = v;
    }
    Ok((out, w, h))
}

/// The first array of a NumPy `.npz` (a zip of `.npy` files, stored or
/// deflated), 2-D little-endian `f4` or `f8`: values row-major, width, height.
#[cfg(feature = "bench")]
pub fn read_npz_f32(path: &Path) -> Result<(Vec<f32>, usize, usize), EvalError> {
    use std::io::Read;
    let bytes = std::fs::read(path).map_err(|source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |why: &str| EvalError::Format {
        path: path.to_path_buf(),
        why: why.to_string(),
    };
    let u16_at = |i: usize| {
        bytes
            .get(i..i + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    // The zip's first local file header.
    if bytes.get(..4) != Some(&[0x50, 0x4b, 0x03, 0x04][..]) {
        return Err(bad("not a zip file (an .npz starts with a zip header)"));
    }
    let header = || bad("truncated zip header");
    let method = u16_at(8).ok_or_else(header)?;
    let name_len = u16_at(26).ok_or_else(header)? as usize;
    let extra_len = u16_at(28).ok_or_else(header)? as usize;
    let data = bytes.get(30 + name_len + extra_len..).ok_or_else(header)?;
    let npy = match method {
        0 => data.to_vec(),
        8 => {
            let mut out = Vec::new();
            // At most 1 GiB: a damaged or hostile file cannot exhaust memory.
            flate2::read::DeflateDecoder::new(data)
                .take(1 << 30)
                .read_to_end(&mut out)
                .map_err(|e| bad(&format!("deflate: {e}")))?;
            out
        }
        m => {
            return Err(bad(&format!(
                "zip compression method {m} (need stored or deflate)"
            )));
        }
    };
    parse_npy(&npy).map_err(|why| bad(&why))
}

/// A 2-D little-endian `f4`/`f8` `.npy` in C order.
#[cfg(feature = "bench")]
fn parse_npy(b: &[u8]) -> Result<(Vec<f32>, usize, usize), String> {
    if b.get(..6) != Some(&b"\x93NUMPY"[..]) {
        return Err("no .npy magic".into());
    }
    let major = *b.get(6).ok_or("truncated .npy")?;
    let (len, start) = if major == 1 {
        let l = b.get(8..10).ok_or("truncated .npy")?;
        (u16::from_le_bytes([l[0], l[1]]) as usize, 10)
    } else {
        let l = b.get(8..12).ok_or("truncated .npy")?;
        (u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize, 12)
    };
    let head = std::str::from_utf8(b.get(start..start + len).ok_or("truncated .npy header")?)
        .map_err(|_| "the .npy header is not text")?;
    let value = |key: &str| {
        head.split_once(&format!("'{key}':"))
            .map(|(_, rest)| rest.trim_start())
    };
    let descr = value("descr").ok_or("no descr in the .npy header")?;
    let size = if descr.starts_with("'<f4'") {
        4
    } else if descr.starts_with("'<f8'") {
        8
    } else {
        return Err(format!("dtype {descr:.8}; need little-endian f4 or f8"));
    };
    if value("fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err("Fortran order; need C order".into());
    }
    let shape = value("shape").ok_or("no shape in the .npy header")?;
    let dims: Vec<usize> = shape
        .trim_start_matches('(')
        .split(')')
        .next()
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("shape {shape:.20}"))
        })
        .collect::<Result<_, _>>()?;
    let [h, w] = dims[..] else {
        return Err(format!("{} dimensions; need 2", dims.len()));
    };
    let data = b.get(start + len..).unwrap_or_default();
    let need = w
        .checked_mul(h)
        .and_then(|n| n.checked_mul(size))
        .ok_or_else(|| format!("shape {h}x{w} is too large"))?;
    if data.len() < need {
        return Err(format!("{} data bytes for {w}x{h}", data.len()));
    }
    let out = data
        .chunks_exact(size)
        .take(w * h)
        .map(|c| {
            if size == 4 {
                f32::from_le_bytes([c[0], c[1], c[2], c[3]])
            } else {
                f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
            }
        })
        .collect();
    Ok((out, w, h))
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
        let all = Region {
            margin: 1,
            first_col: 0,
        };
        let s = score(&disp, &valid, &gt, w, all);
        // Counted: rows 1..9, columns 4..9 except 7 (x must exceed gt + 1 = 3) -> 8 x 4.
        assert_eq!(s.pixels, 32);
        assert!((s.density - 31.0 / 32.0).abs() < 1e-12, "{s:?}");
        assert!((s.bad2 - 1.0 / 31.0).abs() < 1e-12);
        assert!((s.bad1 - 2.0 / 31.0).abs() < 1e-12);
        assert!((s.epe - 4.0 / 31.0).abs() < 1e-9);
        // One wrong and one missing out of 32.
        assert!((s.bad2_all - 2.0 / 32.0).abs() < 1e-12);
        // From column 6 on: columns 6 and 8 of rows 1..9.
        let s = score(&disp, &valid, &gt, w, Region::for_range(1, 2, 4));
        assert_eq!(s.pixels, 16);
        assert!((s.bad1 - 1.0 / 16.0).abs() < 1e-12, "{s:?}");
    }

    #[test]
    fn both_answered_scores_count_the_same_pixels_for_each_map() {
        let w = 12;
        let gt = vec![3.0f32; w * 4];
        let a = vec![3.0f32; w * 4];
        let mut b = vec![3.0f32; w * 4];
        let av: Vec<bool> = (0..w * 4).map(|i| i % 2 == 0).collect();
        let bv = vec![true; w * 4];
        // b is wrong where a has no answer: not counted against b.
        for (i, v) in b.iter_mut().enumerate() {
            if i % 2 == 1 {
                *v = 9.0;
            }
        }
        let region = Region {
            margin: 0,
            first_col: 0,
        };
        let (sa, sb) = score_both((&a, &av), (&b, &bv), &gt, w, region);
        assert_eq!(sb.bad2, 0.0);
        assert_eq!(sa.density, sb.density);
        // Columns 5..12 counted (a match must stay in the right image): 6, 8, 10 answered by both.
        assert!((sa.density - 3.0 / 7.0).abs() < 1e-12, "{sa:?}");
        assert!(score(&b, &bv, &gt, w, region).bad2 > 0.4);
    }

    #[test]
    #[cfg(feature = "bench")]
    fn pfm_and_npz_ground_truth_read_back() {
        let dir = std::env::temp_dir().join(format!("stereo-eval-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (w, h) = (3usize, 2usize);
        let vals = [1.5f32, 2.0, f32::INFINITY, 4.0, 5.25, 6.0];
        // PFM, little-endian, bottom row first.
        let mut pfm = format!("Pf\n{w} {h}\n-1.0\n").into_bytes();
        for y in (0..h).rev() {
            for x in 0..w {
                pfm.extend(vals[y * w + x].to_le_bytes());
            }
        }
        std::fs::write(dir.join("d.pfm"), &pfm).unwrap();
        let (got, gw, gh) = read_pfm(&dir.join("d.pfm")).unwrap();
        assert_eq!((gw, gh), (w, h));
        assert_eq!(got[..2], vals[..2]);
        assert!(got[2].is_infinite() && clean(got.clone())[2].is_nan());
        // An .npz as NumPy writes it: a deflated .npy in a zip.
        let mut npy = b"\x93NUMPY\x01\x00".to_vec();
        let head = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }    \n";
        npy.extend((head.len() as u16).to_le_bytes());
        npy.extend(head.as_bytes());
        for v in vals {
            npy.extend(v.to_le_bytes());
        }
        let mut enc =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut enc, &npy).unwrap();
        let packed = enc.finish().unwrap();
        let mut zip = vec![0x50, 0x4b, 0x03, 0x04, 20, 0, 0, 0, 8, 0];
        zip.extend([0u8; 16]);
        zip.extend((9u16).to_le_bytes());
        zip.extend((0u16).to_le_bytes());
        zip.extend(b"arr_0.npy");
        zip.extend(&packed);
        std::fs::write(dir.join("d.npz"), &zip).unwrap();
        let (got, gw, gh) = read_npz_f32(&dir.join("d.npz")).unwrap();
        assert_eq!((gw, gh), (w, h));
        assert_eq!(got[3..], vals[3..]);
        // Damaged files are named, not panicked on.
        std::fs::write(dir.join("bad.pfm"), b"P6\n1 1\n255\n").unwrap();
        let e = read_pfm(&dir.join("bad.pfm")).unwrap_err().to_string();
        assert!(e.contains("bad.pfm") && e.contains("Pf"), "{e}");
        std::fs::write(dir.join("short.npz"), &zip[..40]).unwrap();
        let e = read_npz_f32(&dir.join("short.npz"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("short.npz"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn downscaling_averages_blocks() {
        let data = [0u8, 2, 10, 10, 4, 6, 10, 11];
        let (d, w, h) = box_downscale(&data, 4, 2, 2);
        assert_eq!((w, h), (2, 1));
        assert_eq!(d, vec![3, 10]);
    }
}
