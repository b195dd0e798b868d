//! Semi-global matching over census costs.
//!
//! Costs C(p, d) are Hamming distances of census strings ([`crate::costs`],
//! computed per row as the passes need them); they are aggregated along 8 (or 4)
//! straight paths with the usual smoothness terms — P1 for a one-pixel disparity
//! change, P2 (lowered across image edges) for larger jumps ([`crate::paths`]) — in
//! a forward and a backward raster pass that meet in the middle of the image
//! ([`crate::pass`]): each stores its sums for one half and finishes the other,
//! so the two run side by side and no whole aggregation volume is written or read
//! back. Winner-take-all picks the disparity, a parabola refines it to sub-pixel,
//! and [`crate::post`] applies the confidence (uniqueness), left-right
//! consistency, texture (relative to the image's noise) and speckle checks.

use crate::census::bits;
use crate::costs::CensusPair;
use crate::image::{Disparity, GrayImage, StereoError, check_pair, with_min_disp};
use crate::pass::{HalfSums, aggregate};
use crate::post;
use serde::{Deserialize, Serialize};

/// Aggregation paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Paths {
    /// Horizontal, vertical and both diagonals, both ways.
    Eight,
    /// Horizontal and vertical only (cheaper, for low power).
    Four,
}

/// Matching parameters. Defaults suit 160x120 to 640x480 images.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SgmParams {
    /// Smallest disparity searched (pixels): a rig whose nearest range is far
    /// away, or a wide baseline, need not search the disparities below it.
    pub min_disp: usize,
    /// Number of disparities searched (`min_disp..min_disp + max_disp`), a multiple
    /// of 16 up to 256.
    pub max_disp: usize,
    /// Census window (odd, 3 to 7).
    pub census_window: usize,
    /// Penalty for a one-pixel disparity change.
    pub p1: u16,
    /// Penalty for larger jumps (before edge adaptation).
    pub p2: u16,
    /// Intensity step at which P2 is halved (edge adaptation); 0 disables it.
    pub p2_edge: u16,
    /// Aggregation paths.
    pub paths: Paths,
    /// Smallest confidence kept: the best total cost must beat every disparity
    /// further than one from it by this fraction (`Disparity::confidence`). A
    /// ratio, so it holds for any contrast and texture; small, because the
    /// left-right check and the speckle filter catch mismatches, and only truly
    /// ambiguous pixels (a repeated pattern, a blank image) tie.
    pub uniqueness: f32,
    /// Largest left-right disparity disagreement (pixels); negative disables the check.
    pub lr_max_diff: f32,
    /// Connected regions smaller than this (pixels) are speckles and made invalid; 0 disables.
    pub speckle_size: usize,
    /// Largest disparity step inside one region for the speckle filter (pixels).
    pub speckle_range: f32,
    /// Pixels whose census window holds less texture (summed horizontal gradient)
    /// than this many times what the image's own noise gives are made invalid
    /// (`post::texture_threshold`); 0 disables.
    pub texture_noise: f32,
}

impl Default for SgmParams {
    fn default() -> Self {
        Self {
            min_disp: 0,
            max_disp: 64,
            census_window: 5,
            p1: 12,
            p2: 72,
            p2_edge: 24,
            paths: Paths::Eight,
            uniqueness: 0.05,
            lr_max_diff: 1.0,
            speckle_size: 40,
            speckle_range: 1.0,
            texture_noise: 0.1,
        }
    }
}

impl SgmParams {
    /// Check parameter ranges.
    pub fn validate(&self) -> Result<(), StereoError> {
        let p = |name, value: f64, why| Err(StereoError::Param { name, value, why });
        if !(3..=7).contains(&self.census_window) || self.census_window.is_multiple_of(2) {
            return p(
                "census_window",
                self.census_window as f64,
                "must be 3, 5 or 7",
            );
        }
        if self.p1 == 0 || self.p2 <= self.p1 || self.p2 > 1000 {
            return p("p2", self.p2 as f64, "need 0 < p1 < p2 <= 1000");
        }
        if !(0.0..1.0).contains(&self.uniqueness) {
            return p("uniqueness", self.uniqueness as f64, "must be in [0, 1)");
        }
        if !(0.0..=100.0).contains(&self.texture_noise) {
            return p(
                "texture_noise",
                self.texture_noise as f64,
                "must be in [0, 100]",
            );
        }
        if !self.lr_max_diff.is_finite() || !self.speckle_range.is_finite() {
            return p("lr_max_diff", self.lr_max_diff as f64, "must be finite");
        }
        Ok(())
    }
}

/// The hand-written SIMD kernels the matchers run on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Simd {
    /// x86-64 with AVX2 (checked at run time).
    Avx2,
    /// aarch64 (NEON is part of its baseline).
    Neon,
    /// The generic code only (compiled for the baseline instruction set, which
    /// the compiler vectorises as it can).
    Generic,
}

impl std::fmt::Display for Simd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Simd::Avx2 => "AVX2",
            Simd::Neon => "NEON",
            Simd::Generic => "none (generic code)",
        })
    }
}

/// Set by [`set_generic_only`].
static GENERIC_ONLY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Run the generic code instead of the SIMD kernels in this process (like
/// OpenCV's `setUseOptimized(false)`): to check the kernels against it
/// (`stereo simd-check`) or to rule them out while chasing a fault. A match
/// running while it changes may run some steps with one and some with the
/// other, which give the same results.
pub fn set_generic_only(on: bool) {
    GENERIC_ONLY.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// The SIMD kernels in use: the CPU's, unless [`set_generic_only`] asked for
/// the generic code.
pub fn simd() -> Simd {
    if GENERIC_ONLY.load(std::sync::atomic::Ordering::Relaxed) {
        return Simd::Generic;
    }
    native_simd()
}

/// The kernels this CPU has.
#[cfg(target_arch = "x86_64")]
fn native_simd() -> Simd {
    if std::arch::is_x86_feature_detected!("avx2") {
        Simd::Avx2
    } else {
        Simd::Generic
    }
}

/// The kernels this CPU has.
#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
fn native_simd() -> Simd {
    Simd::Neon
}

/// The kernels this CPU has.
#[cfg(not(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_feature = "neon")
)))]
fn native_simd() -> Simd {
    Simd::Generic
}

/// Whether the AVX2 versions of the hot loops run in this process.
pub fn uses_avx2() -> bool {
    simd() == Simd::Avx2
}

/// A semi-global matcher that keeps its working memory (the stored half-sums) between frames, so a video stream does not pay for
/// allocating and page-faulting tens of megabytes per frame.
#[derive(Debug, Default)]
pub struct Sgm {
    /// Parameters.
    pub params: SgmParams,
    sums: HalfSums,
}

impl Sgm {
    /// A matcher with `params`.
    pub fn new(params: SgmParams) -> Result<Self, StereoError> {
        params.validate()?;
        Ok(Self {
            params,
            ..Self::default()
        })
    }

    /// Match a rectified pair: disparity of the left image.
    pub fn match_pair(
        &mut self,
        left: &GrayImage,
        right: &GrayImage,
    ) -> Result<Disparity, StereoError> {
        let prm = self.params;
        prm.validate()?;
        check_pair(left, right, prm.min_disp, prm.max_disp, prm.census_window)?;
        let sums = &mut self.sums;
        with_min_disp(left, right, prm.min_disp, |left, right| {
            let window = prm.census_window;
            let wta = if bits(window) <= u32::BITS {
                let census = CensusPair::<u32>::new(left, right, window, prm.max_disp);
                aggregate(&census, left, &prm, sums)
            } else {
                let census = CensusPair::<u64>::new(left, right, window, prm.max_disp);
                aggregate(&census, left, &prm, sums)
            };
            Ok(post::finish(wta, left, &prm))
        })
    }
}

/// Full semi-global matching of a rectified pair (a one-off [`Sgm`]).
pub fn match_pair(
    left: &GrayImage,
    right: &GrayImage,
    prm: &SgmParams,
) -> Result<Disparity, StereoError> {
    Sgm::new(*prm)?.match_pair(left, right)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A random texture shifted `shift` pixels left.
    pub(crate) fn textured(w: usize, h: usize, shift: usize) -> GrayImage {
        let mut rng = sim::rng::Rng::new(4);
        let bw = w + 16;
        let base: Vec<u8> = (0..bw * h).map(|_| rng.below(256) as u8).collect();
        let data = (0..h)
            .flat_map(|y| (0..w).map(move |x| (y, x)))
            .map(|(y, x)| base[y * bw + x + shift])
            .collect();
        GrayImage::new(w, h, data, "left").unwrap()
    }

    #[test]
    fn a_shifted_random_texture_is_matched_at_its_shift() {
        let (w, h) = (96, 40);
        let (l, r) = (textured(w, h, 0), textured(w, h, 7));
        // right(x) = base(x + 7) and left(x) = base(x): left pixel x matches right x - 7.
        let d = match_pair(
            &l,
            &r,
            &SgmParams {
                max_disp: 16,
                ..SgmParams::default()
            },
        )
        .unwrap();
        let mut good = 0;
        let mut valid = 0;
        for y in 3..h - 3 {
            for x in 20..w - 3 {
                let i = y * w + x;
                if d.valid[i] {
                    valid += 1;
                    good += ((d.disp[i] - 7.0).abs() < 0.5) as usize;
                }
            }
        }
        assert!(valid > 2000 && good * 100 >= valid * 99, "{good}/{valid}");
    }

    /// Share of the pixels from column `from` on that are valid and within half
    /// a pixel of `shift`, and the share valid.
    fn at_shift(d: &Disparity, from: usize, shift: f32) -> (f64, f64) {
        let (w, h) = (d.width, d.height);
        let (mut good, mut valid, mut n) = (0, 0, 0);
        for y in 3..h - 3 {
            for x in from..w - 3 {
                let i = y * w + x;
                n += 1;
                if d.valid[i] {
                    valid += 1;
                    good += usize::from((d.disp[i] - shift).abs() < 0.5);
                }
            }
        }
        (good as f64 / valid.max(1) as f64, valid as f64 / n as f64)
    }

    #[test]
    fn wide_ranges_and_a_smallest_disparity_find_far_shifts() {
        let (w, h, shift) = (420, 24, 200);
        let (l, r) = (textured_wide(w, h, 0, 256), textured_wide(w, h, shift, 256));
        // 256 disparities from 0.
        let full = match_pair(
            &l,
            &r,
            &SgmParams {
                max_disp: 256,
                ..SgmParams::default()
            },
        )
        .unwrap();
        let (good, density) = at_shift(&full, 260, shift as f32);
        assert!(good > 0.99 && density > 0.9, "0..256: {good} of {density}");
        // 32 disparities from 184: the same answers, for an eighth of the work.
        let narrow = match_pair(
            &l,
            &r,
            &SgmParams {
                min_disp: 184,
                max_disp: 32,
                ..SgmParams::default()
            },
        )
        .unwrap();
        let (good, density) = at_shift(&narrow, 260, shift as f32);
        assert!(
            good > 0.99 && density > 0.9,
            "184..216: {good} of {density}"
        );
        // Left of the range's start nothing can match.
        assert!((0..h).all(|y| (0..184).all(|x| !narrow.valid[y * w + x])));
        // Outside the range the shift is not found: no wrong answer is trusted.
        let off = match_pair(
            &l,
            &r,
            &SgmParams {
                min_disp: 0,
                max_disp: 128,
                ..SgmParams::default()
            },
        )
        .unwrap();
        let (_, density) = at_shift(&off, 260, shift as f32);
        assert!(density < 0.2, "a shift beyond the range: density {density}");
    }

    /// A random texture `extra` wider than the image, shifted `shift` pixels left.
    fn textured_wide(w: usize, h: usize, shift: usize, extra: usize) -> GrayImage {
        let mut rng = sim::rng::Rng::new(9);
        let bw = w + extra;
        let base: Vec<u8> = (0..bw * h).map(|_| rng.below(256) as u8).collect();
        let data = (0..h)
            .flat_map(|y| (0..w).map(move |x| (y, x)))
            .map(|(y, x)| base[y * bw + x + shift])
            .collect();
        GrayImage::new(w, h, data, "left").unwrap()
    }
}
