//! Block matching: census Hamming costs summed over a square window, winner takes
//! all, with the same sub-pixel, uniqueness, left-right and speckle steps as SGM.
//! No path aggregation: the lowest-power mode.

use crate::image::{Disparity, GrayImage, StereoError, check_pair};
use crate::post;
use crate::sgm::SgmParams;
use rayon::prelude::*;

/// Block-match a rectified pair with a `block` x `block` aggregation window (odd).
pub fn match_pair(
    left: &GrayImage,
    right: &GrayImage,
    prm: &SgmParams,
    block: usize,
) -> Result<Disparity, StereoError> {
    prm.validate()?;
    if block.is_multiple_of(2) || !(1..=31).contains(&block) {
        return Err(StereoError::Param {
            name: "block",
            value: block as f64,
            why: "must be odd, 1 to 31",
        });
    }
    check_pair(left, right, prm.max_disp, prm.census_window.max(block))?;
    let (w, h, dn) = (left.width, left.height, prm.max_disp);
    let mut cost = Vec::new();
    crate::costs::census_costs(left, right, prm.census_window, dn, &mut cost);
    let r = block / 2;
    // Box sums: horizontal running sums per row, then vertical sums per pixel.
    let mut hsum = vec![0u16; w * h * dn];
    hsum.par_chunks_mut(w * dn)
        .enumerate()
        .for_each(|(y, row)| {
            for x in 0..w {
                let (x0, x1) = (x.saturating_sub(r), (x + r).min(w - 1));
                let out = &mut row[x * dn..(x + 1) * dn];
                for xx in x0..=x1 {
                    let c = &cost[(y * w + xx) * dn..(y * w + xx + 1) * dn];
                    for (o, &v) in out.iter_mut().zip(c) {
                        *o += v as u16;
                    }
                }
            }
        });
    let mut sums = vec![0u16; w * h * dn];
    sums.par_chunks_mut(w * dn)
        .enumerate()
        .for_each(|(y, row)| {
            let (y0, y1) = (y.saturating_sub(r), (y + r).min(h - 1));
            for yy in y0..=y1 {
                for (o, &v) in row.iter_mut().zip(&hsum[yy * w * dn..(yy + 1) * w * dn]) {
                    *o += v;
                }
            }
        });
    let zeros = vec![0u16; w * h * dn];
    let wta = post::winner_take_all(&sums, &zeros, w, h, dn, prm.uniqueness);
    let mut disp = post::check_left_right(wta, prm.lr_max_diff);
    post::invalidate_featureless(&mut disp, left, prm.census_window, prm.texture_threshold);
    post::invalidate_border(&mut disp, r.max(prm.census_window / 2));
    if prm.speckle_size > 0 {
        post::filter_speckles(&mut disp, prm.speckle_size, prm.speckle_range);
    }
    Ok(disp)
}
