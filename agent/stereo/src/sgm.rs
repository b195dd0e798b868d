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
//! and [`crate::post`] applies uniqueness, left-right consistency, texture and
//! speckle checks.

use crate::census::bits;
use crate::costs::CensusPair;
use crate::image::{Disparity, GrayImage, StereoError, check_pair};
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
    /// Number of disparities searched (0..max_disp), a multiple of 16.
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
    /// Best cost must beat every non-neighbouring disparity by this fraction.
    pub uniqueness: f32,
    /// Largest left-right disparity disagreement (pixels); negative disables the check.
    pub lr_max_diff: f32,
    /// Connected regions smaller than this (pixels) are speckles and made invalid; 0 disables.
    pub speckle_size: usize,
    /// Largest disparity step inside one region for the speckle filter (pixels).
    pub speckle_range: f32,
    /// Pixels whose summed horizontal gradient over the census window is below this are
    /// featureless and made invalid.
    pub texture_threshold: u32,
}

impl Default for SgmParams {
    fn default() -> Self {
        Self {
            max_disp: 64,
            census_window: 5,
            p1: 12,
            p2: 72,
            p2_edge: 24,
            paths: Paths::Eight,
            uniqueness: 0.2,
            lr_max_diff: 1.0,
            speckle_size: 40,
            speckle_range: 1.0,
            texture_threshold: 40,
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
        if !self.lr_max_diff.is_finite() || !self.speckle_range.is_finite() {
            return p("lr_max_diff", self.lr_max_diff as f64, "must be finite");
        }
        Ok(())
    }
}

/// Whether the AVX2 versions of the hot loops run on this machine.
pub fn uses_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
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
        check_pair(left, right, prm.max_disp, prm.census_window)?;
        let window = prm.census_window;
        let wta = if bits(window) <= u32::BITS {
            let census = CensusPair::<u32>::new(left, right, window, prm.max_disp);
            aggregate(&census, left, &prm, &mut self.sums)
        } else {
            let census = CensusPair::<u64>::new(left, right, window, prm.max_disp);
            aggregate(&census, left, &prm, &mut self.sums)
        };
        let mut disp = post::check_left_right(wta, prm.lr_max_diff);
        post::invalidate_featureless(&mut disp, left, prm.census_window, prm.texture_threshold);
        post::invalidate_border(&mut disp, prm.census_window / 2);
        if prm.speckle_size > 0 {
            post::filter_speckles(&mut disp, prm.speckle_size, prm.speckle_range);
        }
        Ok(disp)
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
}
