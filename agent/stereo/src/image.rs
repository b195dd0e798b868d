//! Image and disparity-map types, with input checks.

use thiserror::Error;

/// Why a pair or a parameter set was refused.
#[derive(Debug, Error, PartialEq)]
pub enum StereoError {
    /// An image buffer does not match its stated size.
    #[error("{which} image: {len} bytes for {width}x{height} (need width*height 8-bit pixels)")]
    BadBuffer {
        which: &'static str,
        len: usize,
        width: usize,
        height: usize,
    },
    /// Left and right differ in size.
    #[error("left image is {lw}x{lh} but right is {rw}x{rh}; a rectified pair has equal sizes")]
    SizeMismatch {
        lw: usize,
        lh: usize,
        rw: usize,
        rh: usize,
    },
    /// The image is too small for the matching window.
    #[error("image {width}x{height} is smaller than the {win}x{win} matching window")]
    TooSmall {
        width: usize,
        height: usize,
        win: usize,
    },
    /// The disparity range does not fit the image or the vector width.
    #[error(
        "disparity range {min_disp}..{min_disp}+{max_disp}: the number of disparities must be a multiple of 16 from 16 to {MAX_DISPARITIES}, and the range must end inside the image width {width}"
    )]
    DisparityRange {
        min_disp: usize,
        max_disp: usize,
        width: usize,
    },
    /// A parameter is out of range.
    #[error("parameter `{name}` = {value}: {why}")]
    Param {
        name: &'static str,
        value: f64,
        why: &'static str,
    },
}

/// An 8-bit grayscale image, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct GrayImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Pixels, row-major.
    pub data: Vec<u8>,
}

impl GrayImage {
    /// Wrap a buffer, checking its size.
    pub fn new(
        width: usize,
        height: usize,
        data: Vec<u8>,
        which: &'static str,
    ) -> Result<Self, StereoError> {
        if width == 0 || height == 0 || data.len() != width * height {
            return Err(StereoError::BadBuffer {
                which,
                len: data.len(),
                width,
                height,
            });
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// Pixel at (x, y).
    #[inline]
    pub fn at(&self, x: usize, y: usize) -> u8 {
        self.data[y * self.width + x]
    }
}

/// The most disparities one match searches (from its smallest).
pub const MAX_DISPARITIES: usize = 256;

/// Check a pair for matching disparities `min_disp..min_disp + max_disp`.
pub fn check_pair(
    left: &GrayImage,
    right: &GrayImage,
    min_disp: usize,
    max_disp: usize,
    window: usize,
) -> Result<(), StereoError> {
    for (which, im) in [("left", left), ("right", right)] {
        if im.width == 0 || im.height == 0 || im.data.len() != im.width * im.height {
            return Err(StereoError::BadBuffer {
                which,
                len: im.data.len(),
                width: im.width,
                height: im.height,
            });
        }
    }
    if left.width != right.width || left.height != right.height {
        return Err(StereoError::SizeMismatch {
            lw: left.width,
            lh: left.height,
            rw: right.width,
            rh: right.height,
        });
    }
    if left.width < window || left.height < window {
        return Err(StereoError::TooSmall {
            width: left.width,
            height: left.height,
            win: window,
        });
    }
    if max_disp == 0
        || !max_disp.is_multiple_of(16)
        || max_disp > MAX_DISPARITIES
        || min_disp + max_disp >= left.width
    {
        return Err(StereoError::DisparityRange {
            min_disp,
            max_disp,
            width: left.width,
        });
    }
    if left.width - min_disp < window {
        return Err(StereoError::TooSmall {
            width: left.width - min_disp,
            height: left.height,
            win: window,
        });
    }
    Ok(())
}

/// A disparity map of the left image: sub-pixel disparities (pixels) and validity.
#[derive(Debug, Clone, PartialEq)]
pub struct Disparity {
    /// Width.
    pub width: usize,
    /// Height.
    pub height: usize,
    /// Disparity of each left pixel; meaningful only where `valid`.
    pub disp: Vec<f32>,
    /// Whether the matcher answers the pixel: its cost minimum is unique, the right
    /// image's match points back to it, its window holds texture above the
    /// image's noise floor, and it is not in a speckle or the border.
    pub valid: Vec<bool>,
    /// How distinct each pixel's cost minimum is, `1 - best / second` over the
    /// aggregated costs (the second the cheapest disparity further than one from
    /// the best): 0 where another disparity is as cheap, towards 1 for one clear
    /// minimum. `valid` needs at least the matcher's `uniqueness`.
    pub confidence: Vec<f32>,
}

impl Disparity {
    /// Fraction of valid pixels.
    pub fn density(&self) -> f64 {
        self.valid.iter().filter(|&&v| v).count() as f64 / self.valid.len().max(1) as f64
    }

    /// Depth (m) of every pixel from focal length (px) and baseline (m); NaN where invalid.
    pub fn depth(&self, fx: f64, baseline: f64) -> Vec<f32> {
        let fb = (fx * baseline) as f32;
        self.disp
            .iter()
            .zip(&self.valid)
            .map(|(&d, &v)| if v && d > 0.0 { fb / d } else { f32::NAN })
            .collect()
    }

    /// 3D point (camera frame) of pixel (x, y) through a 4x4 disparity-to-depth matrix Q
    /// (OpenCV's convention); `None` where invalid or at zero disparity.
    pub fn reproject(&self, q: &[[f64; 4]; 4], x: usize, y: usize) -> Option<[f64; 3]> {
        let i = y * self.width + x;
        if !self.valid[i] || self.disp[i] <= 0.0 {
            return None;
        }
        let v = [x as f64, y as f64, self.disp[i] as f64, 1.0];
        let h: Vec<f64> = q
            .iter()
            .map(|row| row.iter().zip(v).map(|(a, b)| a * b).sum())
            .collect();
        (h[3].abs() > 1e-12).then(|| [h[0] / h[3], h[1] / h[3], h[2] / h[3]])
    }
}

/// Q for an ideal rectified rig: principal point (cx, cy), focal length f, baseline b
/// (right camera at +b along x), as OpenCV's `stereoRectify` returns it.
pub fn q_matrix(fx: f64, cx: f64, cy: f64, baseline: f64) -> [[f64; 4]; 4] {
    [
        [1.0, 0.0, 0.0, -cx],
        [0.0, 1.0, 0.0, -cy],
        [0.0, 0.0, 0.0, fx],
        [0.0, 0.0, 1.0 / baseline, 0.0],
    ]
}

/// Match disparities `min_disp..` with a matcher that searches from 0: the left
/// image from column `min_disp` on is matched against the right image without
/// its last `min_disp` columns (left x + min_disp meets right x - d there), and
/// the answers are shifted back. Columns left of `min_disp` have no answer (their
/// match would leave the right image).
pub(crate) fn with_min_disp<E>(
    left: &GrayImage,
    right: &GrayImage,
    min_disp: usize,
    matcher: impl FnOnce(&GrayImage, &GrayImage) -> Result<Disparity, E>,
) -> Result<Disparity, E> {
    if min_disp == 0 {
        return matcher(left, right);
    }
    let (w, h) = (left.width, left.height);
    let cw = w - min_disp;
    let crop = |im: &GrayImage, from: usize| GrayImage {
        width: cw,
        height: h,
        data: im
            .data
            .chunks_exact(w)
            .flat_map(|row| &row[from..from + cw])
            .copied()
            .collect(),
    };
    let inner = matcher(&crop(left, min_disp), &crop(right, 0))?;
    let mut out = Disparity {
        width: w,
        height: h,
        disp: vec![0.0; w * h],
        valid: vec![false; w * h],
        confidence: vec![0.0; w * h],
    };
    for y in 0..h {
        let (src, dst) = (y * cw, y * w + min_disp);
        for x in 0..cw {
            out.disp[dst + x] = inner.disp[src + x] + min_disp as f32;
            out.valid[dst + x] = inner.valid[src + x];
            out.confidence[dst + x] = inner.confidence[src + x];
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(w: usize, h: usize) -> GrayImage {
        GrayImage::new(w, h, vec![0; w * h], "left").unwrap()
    }

    #[test]
    fn bad_pairs_are_refused_with_a_reason() {
        assert!(matches!(
            GrayImage::new(4, 4, vec![0; 15], "left"),
            Err(StereoError::BadBuffer { .. })
        ));
        assert!(GrayImage::new(0, 4, vec![], "left").is_err());
        assert!(matches!(
            check_pair(&img(64, 32), &img(64, 31), 0, 16, 5),
            Err(StereoError::SizeMismatch { .. })
        ));
        assert!(matches!(
            check_pair(&img(64, 32), &img(64, 32), 0, 64, 5),
            Err(StereoError::DisparityRange { .. })
        ));
        assert!(matches!(
            check_pair(&img(64, 32), &img(64, 32), 0, 24, 5),
            Err(StereoError::DisparityRange { .. })
        ));
        assert!(matches!(
            check_pair(&img(4, 4), &img(4, 4), 0, 16, 5),
            Err(StereoError::TooSmall { .. })
        ));
        // The range must end inside the image, and hold at most 256 disparities.
        assert!(matches!(
            check_pair(&img(64, 32), &img(64, 32), 32, 32, 5),
            Err(StereoError::DisparityRange { .. })
        ));
        assert!(matches!(
            check_pair(&img(400, 32), &img(400, 32), 0, 272, 5),
            Err(StereoError::DisparityRange { .. })
        ));
        check_pair(&img(400, 32), &img(400, 32), 0, 256, 5).unwrap();
        check_pair(&img(64, 32), &img(64, 32), 16, 32, 5).unwrap();
        check_pair(&img(64, 32), &img(64, 32), 0, 32, 5).unwrap();
    }

    #[test]
    fn depth_and_q_reprojection_agree() {
        let d = Disparity {
            width: 2,
            height: 1,
            disp: vec![8.0, 4.0],
            valid: vec![true, false],
            confidence: vec![0.5, 0.0],
        };
        let z = d.depth(80.0, 0.1);
        assert!((z[0] - 1.0).abs() < 1e-6 && z[1].is_nan());
        let q = q_matrix(80.0, 0.5, 0.0, 0.1);
        let p = d.reproject(&q, 0, 0).unwrap();
        assert!((p[2] - 1.0).abs() < 1e-9 && (p[0] - (-0.5 / 80.0)).abs() < 1e-9);
        assert!(d.reproject(&q, 1, 0).is_none());
    }
}
