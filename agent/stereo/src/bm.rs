//! Block matching: census Hamming costs summed over a square window, winner takes
//! all, with the same sub-pixel, uniqueness, left-right and speckle steps as SGM.
//! No path aggregation: the lowest-power mode.

use crate::census::{CensusWord, bits};
use crate::costs::CensusPair;
use crate::image::{Disparity, GrayImage, StereoError, check_pair, with_min_disp};
use crate::post;
use crate::sgm::SgmParams;
use rayon::prelude::*;

/// Output rows per parallel task: each band slides its window down its own rows.
const BAND: usize = 16;

/// Window sums of the costs and winner-take-all, band by band: a band keeps the
/// sum of the cost rows in its window (one row added, one taken away per step,
/// from a ring of the window's cost rows) and runs a box sum along each row, so no
/// cost volume is ever stored. Windows are clipped at the image border.
fn block_wta<W: CensusWord>(census: &CensusPair<W>, h: usize, r: usize, keep: f32) -> post::Wta {
    let (w, dn) = (census.width, census.dn);
    let n = w * dn;
    let mut wta = post::Wta::blank(w, h);
    wta.left
        .disp
        .par_chunks_mut(BAND * w)
        .zip(wta.left.valid.par_chunks_mut(BAND * w))
        .zip(wta.left.confidence.par_chunks_mut(BAND * w))
        .zip(wta.right.par_chunks_mut(BAND * w))
        .enumerate()
        .for_each(|(b, (((d, v), c), rr))| {
            let y0 = b * BAND;
            let y1 = (y0 + BAND).min(h);
            let block = 2 * r + 1;
            let mut ring = vec![0u8; block * n];
            let mut vsum = vec![0u16; n];
            let mut totals = vec![0u16; n];
            let slot = |y: usize| (y % block) * n;
            for y in y0.saturating_sub(r)..=(y0 + r).min(h - 1) {
                let row = &mut ring[slot(y)..slot(y) + n];
                census.row(y, row);
                add_row(&mut vsum, row);
            }
            for y in y0..y1 {
                if y > y0 {
                    if y > r {
                        let gone = y - r - 1;
                        sub_row(&mut vsum, &ring[slot(gone)..slot(gone) + n]);
                    }
                    if y + r < h {
                        let row = &mut ring[slot(y + r)..slot(y + r) + n];
                        census.row(y + r, row);
                        add_row(&mut vsum, row);
                    }
                }
                box_along_row(&vsum, &mut totals, dn, r);
                let o = (y - y0) * w;
                let out = post::WtaRows {
                    disp: &mut d[o..o + w],
                    valid: &mut v[o..o + w],
                    conf: &mut c[o..o + w],
                    right: &mut rr[o..o + w],
                };
                post::wta_one_row(&mut totals, dn, keep, out);
            }
        });
    wta
}

fn add_row(sum: &mut [u16], row: &[u8]) {
    for (s, &c) in sum.iter_mut().zip(row) {
        *s = s.wrapping_add(c as u16);
    }
}

fn sub_row(sum: &mut [u16], row: &[u8]) {
    for (s, &c) in sum.iter_mut().zip(row) {
        *s = s.wrapping_sub(c as u16);
    }
}

/// `out[x] = Σ vsum[x - r ..= x + r]` (clipped at the row's ends), per disparity.
fn box_along_row(vsum: &[u16], out: &mut [u16], dn: usize, r: usize) {
    let w = vsum.len() / dn;
    let mut acc = vec![0u16; dn];
    for x in 0..r.min(w) {
        add_cells(&mut acc, &vsum[x * dn..(x + 1) * dn]);
    }
    for x in 0..w {
        if x + r < w {
            add_cells(&mut acc, &vsum[(x + r) * dn..(x + r + 1) * dn]);
        }
        if x > r {
            let g = x - r - 1;
            for (a, &v) in acc.iter_mut().zip(&vsum[g * dn..(g + 1) * dn]) {
                *a = a.wrapping_sub(v);
            }
        }
        out[x * dn..(x + 1) * dn].copy_from_slice(&acc);
    }
}

fn add_cells(acc: &mut [u16], v: &[u16]) {
    for (a, &b) in acc.iter_mut().zip(v) {
        *a = a.wrapping_add(b);
    }
}

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
    check_pair(
        left,
        right,
        prm.min_disp,
        prm.max_disp,
        prm.census_window.max(block),
    )?;
    with_min_disp(left, right, prm.min_disp, |left, right| {
        let (window, dn) = (prm.census_window, prm.max_disp);
        let r = block / 2;
        let keep = 1.0 - prm.uniqueness;
        let wta = if bits(window) <= u32::BITS {
            block_wta(
                &CensusPair::<u32>::new(left, right, window, dn),
                left.height,
                r,
                keep,
            )
        } else {
            block_wta(
                &CensusPair::<u64>::new(left, right, window, dn),
                left.height,
                r,
                keep,
            )
        };
        let mut disp = post::check_left_right(wta, prm.lr_max_diff);
        let sigma = post::noise_sigma(left);
        let t = post::texture_threshold(sigma, prm.census_window, prm.texture_noise);
        post::invalidate_featureless(&mut disp, left, prm.census_window, t);
        post::invalidate_border(&mut disp, r.max(prm.census_window / 2));
        if prm.speckle_size > 0 {
            post::filter_speckles(&mut disp, prm.speckle_size, prm.speckle_range);
        }
        Ok(disp)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::census::census;
    use crate::costs::cost_volume;
    use crate::sgm::tests::textured;

    /// Sliding window sums give what summing every clipped window afresh gives.
    #[test]
    fn band_sums_equal_window_sums_from_the_cost_volume() {
        let (w, h, dn, r) = (50, 37, 16, 3);
        let (l, rt) = (textured(w, h, 4), textured(w, h, 0));
        let pair = CensusPair::<u32>::new(&l, &rt, 5, dn);
        let fast = block_wta(&pair, h, r, 0.9);
        let vol = cost_volume(&census::<u32>(&l, 5), &census::<u32>(&rt, 5), w, h, dn, 24);
        let mut sums = vec![0u16; w * h * dn];
        for y in 0..h {
            for x in 0..w {
                for yy in y.saturating_sub(r)..=(y + r).min(h - 1) {
                    for xx in x.saturating_sub(r)..=(x + r).min(w - 1) {
                        for d in 0..dn {
                            sums[(y * w + x) * dn + d] += vol[(yy * w + xx) * dn + d] as u16;
                        }
                    }
                }
            }
        }
        let slow = post::winner_take_all(&mut sums, w, h, dn, 0.1);
        assert_eq!(fast.left.disp, slow.left.disp);
        assert_eq!(fast.left.valid, slow.left.valid);
        assert_eq!(fast.right, slow.right);
        assert!(fast.left.valid.iter().filter(|&&v| v).count() > w * h / 4);
    }
}
