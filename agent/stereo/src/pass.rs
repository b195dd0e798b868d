//! The two raster passes of semi-global matching, run so that they meet in the
//! middle of the image: each stores its half-sums for one half and finishes the
//! other half straight into winner-take-all disparities.

use crate::census::{CensusWord, bits};
use crate::costs::CensusPair;
use crate::image::GrayImage;
#[cfg(target_arch = "x86_64")]
use crate::paths::Avx2;
#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
use crate::paths::Neon;
use crate::paths::{Base, Cell, Kernel, RowJob, p2_table};
use crate::post;
use crate::sgm::{Paths, SgmParams};

/// Where a pass puts the path sums of the rows it aggregates.
enum RowSink<'a> {
    /// Into the shared store of half-sums, rows `y0..`.
    Store { s: Stored<'a>, y0: usize },
    /// Added to the other pass's stored sums of rows `y0..` and turned into the
    /// winner-take-all rows of `out` (whose first row is also `y0`).
    Finish {
        other: StoredRef<'a>,
        y0: usize,
        out: WtaOut<'a>,
    },
    /// Every pixel's 16-bit sums, rows `y0..` (`w x dn` each): what the tests compare.
    #[cfg(test)]
    Raw { out: &'a mut [u16], y0: usize },
}

impl<'a> RowSink<'a> {
    /// Finish rows `y0..` into the winner-take-all rows `out` (disparity, validity,
    /// right disparity) with the other pass's stored sums (excesses, bases).
    fn finish(
        (disp, valid, conf, right): (&'a mut [f32], &'a mut [bool], &'a mut [f32], &'a mut [i32]),
        (excess, base): (&'a [u8], &'a [u16]),
        y0: usize,
    ) -> Self {
        RowSink::Finish {
            other: StoredRef { excess, base },
            y0,
            out: WtaOut {
                disp,
                valid,
                conf,
                right,
            },
        }
    }
}

/// One pass's sums of some rows, kept in a byte per disparity: per pixel the
/// smallest sum (`base`, `w` per row) and every sum's excess over it, saturated at
/// 255 (`excess`, `w x dn` per row). Half the memory traffic of 16-bit sums; the
/// saturation only touches disparities that cost 255 more than the pixel's best
/// along these paths, far from any winner.
struct Stored<'a> {
    excess: &'a mut [u8],
    base: &'a mut [u16],
}

/// [`Stored`], read back.
#[derive(Clone, Copy)]
struct StoredRef<'a> {
    excess: &'a [u8],
    base: &'a [u16],
}

/// Store one pixel's sums as their minimum (returned) and byte excesses over it.
#[inline(always)]
fn squeeze(sums: &[u16], excess: &mut [u8]) -> u16 {
    let m = sums.iter().copied().fold(u16::MAX, u16::min);
    for (o, &v) in excess.iter_mut().zip(sums) {
        *o = (v - m).min(255) as u8;
    }
    m
}

/// Add one pixel's stored sums (minimum `base`, byte excesses) onto its sums.
#[inline(always)]
fn unsqueeze(sums: &mut [u16], excess: &[u8], base: u16) {
    for (o, &v) in sums.iter_mut().zip(excess) {
        *o += v as u16 + base;
    }
}

/// What a pass does with each pixel's sums — store them squeezed, or add them to
/// the other pass's and pick the winner — per instruction set: the generic code,
/// or the AVX2 versions where the kernel stands for AVX2.
pub(crate) trait PixelOps {
    /// [`squeeze`].
    #[inline(always)]
    fn squeeze(&self, sums: &[u16], excess: &mut [u8]) -> u16 {
        squeeze(sums, excess)
    }

    /// The pixel's `sums` plus the other pass's stored ones (byte excesses and
    /// their base, [`unsqueeze`]) into `out`, `u16::MAX` from `n_valid` on (beyond
    /// the image border); returns the smallest.
    #[inline(always)]
    fn unsqueeze(
        &self,
        sums: &[u16],
        stored: (&[u8], u16),
        n_valid: usize,
        out: &mut [u16],
    ) -> u16 {
        let (excess, base) = stored;
        let out = &mut out[..sums.len()];
        out.copy_from_slice(sums);
        unsqueeze(out, excess, base);
        out[n_valid..].fill(u16::MAX);
        out.iter().copied().fold(u16::MAX, u16::min)
    }

    /// [`post::pick`] of total costs whose minimum is `best`.
    #[inline(always)]
    fn pick(&self, s: &[u16], best: u16, n_valid: usize, keep: f32) -> post::Pick {
        let _ = best;
        post::pick(s, n_valid, keep)
    }

    /// Pick every pixel of a row, in the pass's order.
    fn pick_row(&self, row: PickRow, picker: &mut post::RowPicker, out: WtaRow) {
        pick_row(self, row, picker, out)
    }
}

/// One row's total costs and minima, to pick from ([`PixelOps::pick_row`]).
pub(crate) struct PickRow<'a> {
    totals: &'a [u16],
    bests: &'a [u16],
    dn: usize,
    keep: f32,
    backward: bool,
}

/// A row's disparities, validity and right disparities.
type WtaRow<'a, 'b> = &'b mut post::WtaRows<'a>;

#[inline(always)]
fn pick_row<K: PixelOps + ?Sized>(k: &K, row: PickRow, picker: &mut post::RowPicker, out: WtaRow) {
    let (w, dn) = (row.bests.len(), row.dn);
    for xi in 0..w {
        let x = if row.backward { w - 1 - xi } else { xi };
        let s = &row.totals[x * dn..(x + 1) * dn];
        let p = k.pick(s, row.bests[x], post::n_valid(x, dn), row.keep);
        picker.place(x, p, out);
    }
}

impl PixelOps for Base {}

#[cfg(target_arch = "x86_64")]
impl PixelOps for Avx2 {
    #[inline(always)]
    fn squeeze(&self, sums: &[u16], excess: &mut [u8]) -> u16 {
        if !sums.len().is_multiple_of(16) {
            return squeeze(sums, excess);
        }
        // SAFETY: an `Avx2` value exists only where the CPU has AVX2.
        unsafe { crate::avx2::squeeze(sums, excess) }
    }

    #[inline(always)]
    fn unsqueeze(
        &self,
        sums: &[u16],
        stored: (&[u8], u16),
        n_valid: usize,
        out: &mut [u16],
    ) -> u16 {
        if !sums.len().is_multiple_of(16) {
            return Base.unsqueeze(sums, stored, n_valid, out);
        }
        // SAFETY: as for `squeeze`.
        unsafe { crate::avx2::unsqueeze(sums, stored, n_valid, out) }
    }

    #[inline(always)]
    fn pick(&self, s: &[u16], best: u16, n_valid: usize, keep: f32) -> post::Pick {
        if !s.len().is_multiple_of(16) {
            return post::pick(s, n_valid, keep);
        }
        // SAFETY: as for `squeeze`.
        unsafe { crate::avx2::pick(s, best, n_valid, keep) }
    }

    fn pick_row(&self, row: PickRow, picker: &mut post::RowPicker, out: WtaRow) {
        /// The row loop compiled for AVX2, so that the AVX2 pick inlines into it.
        #[target_feature(enable = "avx2")]
        fn fast(k: &Avx2, row: PickRow, picker: &mut post::RowPicker, out: WtaRow) {
            pick_row(k, row, picker, out)
        }
        // SAFETY: as for `squeeze`; the body of `fast` is safe Rust.
        unsafe { fast(self, row, picker, out) }
    }
}

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
impl PixelOps for Neon {
    #[inline(always)]
    fn squeeze(&self, sums: &[u16], excess: &mut [u8]) -> u16 {
        if !sums.len().is_multiple_of(8) {
            return squeeze(sums, excess);
        }
        crate::neon::squeeze(sums, excess)
    }

    #[inline(always)]
    fn unsqueeze(
        &self,
        sums: &[u16],
        stored: (&[u8], u16),
        n_valid: usize,
        out: &mut [u16],
    ) -> u16 {
        if !sums.len().is_multiple_of(8) {
            return Base.unsqueeze(sums, stored, n_valid, out);
        }
        crate::neon::unsqueeze(sums, stored, n_valid, out)
    }

    #[inline(always)]
    fn pick(&self, s: &[u16], best: u16, n_valid: usize, keep: f32) -> post::Pick {
        if !s.len().is_multiple_of(8) {
            return post::pick(s, n_valid, keep);
        }
        crate::neon::pick(s, best, n_valid, keep)
    }
}

/// The output rows of the winner-take-all that a finishing pass fills.
struct WtaOut<'a> {
    disp: &'a mut [f32],
    valid: &'a mut [bool],
    conf: &'a mut [f32],
    right: &'a mut [i32],
}

/// One raster pass (forward: top-left to bottom-right; backward: the reverse) over
/// the paths that arrive from behind the raster order (horizontal, vertical and,
/// with eight paths, both diagonals). It runs in pieces of rows — it keeps only the
/// previous row's path costs — so that the two passes can meet in the middle of the
/// image: each stores the sums of its first half and finishes the other half
/// directly into disparities, and no pass writes a whole aggregation volume.
struct Pass<T: Cell> {
    backward: bool,
    /// Rows done, in this pass's order.
    done: usize,
    w: usize,
    h: usize,
    dn: usize,
    diagonals: bool,
    p1: T,
    p2t: [T; 256],
    zero: Vec<T>,
    pv: Vec<T>,
    cv: Vec<T>,
    pd1: Vec<T>,
    cd1: Vec<T>,
    pd2: Vec<T>,
    cd2: Vec<T>,
    mv: Vec<T>,
    mcv: Vec<T>,
    md1: Vec<T>,
    mcd1: Vec<T>,
    md2: Vec<T>,
    mcd2: Vec<T>,
    hbuf: Vec<T>,
    /// One pixel's path sums.
    row: Vec<u16>,
    /// Winner-take-all of the rows this pass finishes.
    picker: post::RowPicker,
    /// A finished row's total costs (`w x dn`) and each pixel's smallest.
    totals: Vec<u16>,
    bests: Vec<u16>,
    /// The matching costs of the current row.
    costs: Vec<u8>,
    /// The current row's P2 per pixel along each path ([`Pass::fill_p2`]).
    p2: [Vec<T>; 4],
}

impl<T: Cell> Pass<T> {
    fn new(w: usize, h: usize, dn: usize, prm: &SgmParams, backward: bool) -> Self {
        let stride = dn + 2;
        let diagonals = prm.paths == Paths::Eight;
        // The four-path mode leaves the diagonals' rows empty (never read).
        let new_row = || vec![T::FAR; w * stride];
        let diagonal_row = || if diagonals { new_row() } else { Vec::new() };
        let diagonal_mins = || vec![T::ZERO; if diagonals { w } else { 0 }];
        // A path's first pixel has no predecessor: an all-zero predecessor gives L = C.
        let mut zero = vec![T::ZERO; stride];
        zero[0] = T::FAR;
        zero[stride - 1] = T::FAR;
        Self {
            backward,
            done: 0,
            w,
            h,
            dn,
            diagonals,
            p1: T::from_u16(prm.p1),
            p2t: p2_table(prm.p1, prm.p2, prm.p2_edge).map(T::from_u16),
            zero,
            pv: new_row(),
            cv: new_row(),
            pd1: diagonal_row(),
            cd1: diagonal_row(),
            pd2: diagonal_row(),
            cd2: diagonal_row(),
            mv: vec![T::ZERO; w],
            mcv: vec![T::ZERO; w],
            md1: diagonal_mins(),
            mcd1: diagonal_mins(),
            md2: diagonal_mins(),
            mcd2: diagonal_mins(),
            hbuf: vec![T::FAR; 2 * stride],
            row: vec![0; dn],
            picker: post::RowPicker::new(1.0 - prm.uniqueness),
            totals: vec![0; w * dn],
            bests: vec![0; w],
            costs: vec![0; w * dn],
            p2: std::array::from_fn(|_| vec![T::ZERO; w]),
        }
    }

    /// The P2 of every pixel of row `y` along each path (horizontal, vertical, the
    /// diagonal from behind, the one from ahead), from the intensity step to its
    /// predecessor; 0 where a path has none.
    fn fill_p2(&mut self, img: &[u8], y: usize, first_row: bool) {
        let (w, p2t) = (self.w, &self.p2t);
        let [ph, pv, pd1, pd2] = &mut self.p2;
        let cur = &img[y * w..(y + 1) * w];
        // The predecessor is one step against the raster direction.
        let back: isize = if self.backward { -1 } else { 1 };
        p2_row(p2t, ph, cur, cur, back);
        if first_row {
            pv.fill(T::ZERO);
            pd1.fill(T::ZERO);
            pd2.fill(T::ZERO);
        } else {
            let py = if self.backward { y + 1 } else { y - 1 };
            let prev = &img[py * w..(py + 1) * w];
            p2_row(p2t, pv, cur, prev, 0);
            // The four-path mode has no diagonals (their P2 rows stay zero, unread).
            if self.diagonals {
                p2_row(p2t, pd1, cur, prev, back);
                p2_row(p2t, pd2, cur, prev, -back);
            }
        }
    }

    /// Aggregate the next `rows` rows of this pass's order into `sink`.
    fn run<Kr: Kernel + PixelOps, W: CensusWord>(
        &mut self,
        kr: &Kr,
        census: &CensusPair<W>,
        img: &[u8],
        rows: usize,
        mut sink: RowSink,
    ) {
        let (w, h, dn) = (self.w, self.h, self.dn);
        let (p1, diagonals, backward) = (self.p1, self.diagonals, self.backward);
        for yi in self.done..(self.done + rows).min(h) {
            let y = if backward { h - 1 - yi } else { yi };
            census.row(y, &mut self.costs);
            self.fill_p2(img, y, yi == 0);
            let [ph, pv, pd1, pd2] = &self.p2;
            let job = RowJob {
                costs: &self.costs,
                s: &mut self.row,
                w,
                dn,
                backward,
                first_row: yi == 0,
                diagonals,
                p1,
                p2: [ph, pv, pd1, pd2],
                prev: [&self.pv, &self.pd1, &self.pd2],
                prev_min: [&self.mv, &self.md1, &self.md2],
                cur: [&mut self.cv, &mut self.cd1, &mut self.cd2],
                cur_min: [&mut self.mcv, &mut self.mcd1, &mut self.mcd2],
                hbuf: &mut self.hbuf,
                zero: &self.zero,
            };
            match &mut sink {
                RowSink::Store { s, y0 } => {
                    let (r, o) = ((y - *y0) * w, (y - *y0) * w * dn);
                    let (e, b) = (&mut s.excess[o..o + w * dn], &mut s.base[r..r + w]);
                    kr.row(job, &mut |x, sums| {
                        b[x] = kr.squeeze(sums, &mut e[x * dn..(x + 1) * dn]);
                    });
                }
                RowSink::Finish { other, y0, out } => {
                    let (r, o) = ((y - *y0) * w, (y - *y0) * w * dn);
                    let (e, b) = (&other.excess[o..o + w * dn], &other.base[r..r + w]);
                    let mut rows = post::WtaRows {
                        disp: &mut out.disp[r..r + w],
                        valid: &mut out.valid[r..r + w],
                        conf: &mut out.conf[r..r + w],
                        right: &mut out.right[r..r + w],
                    };
                    let picker = &mut self.picker;
                    picker.start(rows.right, backward);
                    let keep = picker.keep();
                    // The row's totals first, then the picks: each pick is a chain of
                    // dependent steps, which overlap one another when they run
                    // back to back but stall the path recurrence when interleaved
                    // with it.
                    let (totals, bests) = (&mut self.totals, &mut self.bests);
                    kr.row(job, &mut |x, sums| {
                        let (e, n_valid) = (&e[x * dn..(x + 1) * dn], post::n_valid(x, dn));
                        bests[x] = kr.unsqueeze(sums, (e, b[x]), n_valid, &mut totals[x * dn..]);
                    });
                    let row = PickRow {
                        totals,
                        bests,
                        dn,
                        keep,
                        backward,
                    };
                    kr.pick_row(row, picker, &mut rows);
                }
                #[cfg(test)]
                RowSink::Raw { out, y0 } => {
                    let o = (y - *y0) * w * dn;
                    kr.row(job, &mut |x, sums| {
                        out[o + x * dn..o + (x + 1) * dn].copy_from_slice(sums);
                    });
                }
            }
            std::mem::swap(&mut self.pv, &mut self.cv);
            std::mem::swap(&mut self.mv, &mut self.mcv);
            std::mem::swap(&mut self.pd1, &mut self.cd1);
            std::mem::swap(&mut self.md1, &mut self.mcd1);
            std::mem::swap(&mut self.pd2, &mut self.cd2);
            std::mem::swap(&mut self.md2, &mut self.mcd2);
        }
        self.done = (self.done + rows).min(h);
    }
}

/// P2 of every pixel of `cur` against its predecessor `shift` columns to the left
/// (positive) or right (negative) in `from`; 0 where there is none.
#[inline(always)]
fn p2_row<T: Cell>(p2t: &[T; 256], out: &mut [T], cur: &[u8], from: &[u8], shift: isize) {
    let w = cur.len();
    let n = w - shift.unsigned_abs();
    let (o, c, f) = if shift >= 0 {
        let s = shift as usize;
        out[..s].fill(T::ZERO);
        (&mut out[s..], &cur[s..], &from[..n])
    } else {
        let s = (-shift) as usize;
        out[n..].fill(T::ZERO);
        (&mut out[..n], &cur[..n], &from[s..])
    };
    for ((o, &a), &b) in o.iter_mut().zip(c).zip(f) {
        *o = p2t[a.abs_diff(b) as usize];
    }
}

/// Aggregate both passes and pick disparities. The forward pass stores its sums of
/// rows `0..mid` and the backward pass its sums of `mid..h` in `store` (one volume
/// of bytes between them); then each carries on into the other half, adding its own
/// sums to the stored ones row by row and picking the winner while the row is still
/// in cache. The two halves run side by side when a second thread is free.
fn aggregate_and_pick<T: Cell, Kr: Kernel + PixelOps, W: CensusWord>(
    kr: &Kr,
    census: &CensusPair<W>,
    img: &[u8],
    h: usize,
    prm: &SgmParams,
    store: &mut HalfSums,
) -> post::Wta {
    let (w, dn) = (census.width, census.dn);
    let mid = h / 2;
    store.excess.resize(w * h * dn, 0);
    store.base.resize(w * h, 0);
    let mut fwd = Pass::<T>::new(w, h, dn, prm, false);
    let mut bwd = Pass::<T>::new(w, h, dn, prm, true);
    let (et, eb) = store.excess.split_at_mut(mid * w * dn);
    let (bt, bb) = store.base.split_at_mut(mid * w);
    let top = Stored {
        excess: et,
        base: bt,
    };
    let bottom = Stored {
        excess: eb,
        base: bb,
    };
    rayon::join(
        || fwd.run(kr, census, img, mid, RowSink::Store { s: top, y0: 0 }),
        || {
            bwd.run(
                kr,
                census,
                img,
                h - mid,
                RowSink::Store { s: bottom, y0: mid },
            )
        },
    );
    let (et, eb) = store.excess.split_at(mid * w * dn);
    let (bt, bb) = store.base.split_at(mid * w);
    let mut wta = post::Wta::blank(w, h);
    let (dt, db) = wta.left.disp.split_at_mut(mid * w);
    let (vt, vb) = wta.left.valid.split_at_mut(mid * w);
    let (ct, cb) = wta.left.confidence.split_at_mut(mid * w);
    let (rt, rb) = wta.right.split_at_mut(mid * w);
    rayon::join(
        || {
            let sink = RowSink::finish((db, vb, cb, rb), (eb, bb), mid);
            fwd.run(kr, census, img, h - mid, sink)
        },
        || {
            let sink = RowSink::finish((dt, vt, ct, rt), (et, bt), 0);
            bwd.run(kr, census, img, mid, sink)
        },
    );
    wta
}

/// The working memory of the stored half-sums ([`Stored`]), kept between frames.
#[derive(Debug, Default)]
pub(crate) struct HalfSums {
    excess: Vec<u8>,
    base: Vec<u16>,
}

/// Whether path costs fit bytes: L is at most the largest census cost plus P2.
pub(crate) fn fits_u8(prm: &SgmParams) -> bool {
    bits(prm.census_window) + prm.p2 as u32 <= 254
}

/// [`aggregate_and_pick`] with the widest instruction set this CPU has and the
/// narrowest cell type the penalties allow.
pub(crate) fn aggregate<W: CensusWord>(
    census: &CensusPair<W>,
    img: &GrayImage,
    prm: &SgmParams,
    store: &mut HalfSums,
) -> post::Wta {
    let (data, h) = (&img.data[..], img.height);
    let bytes = fits_u8(prm);
    #[cfg(target_arch = "x86_64")]
    if crate::sgm::simd() == crate::sgm::Simd::Avx2
        && let Some(k) = Avx2::detect()
    {
        return if bytes {
            aggregate_and_pick::<u8, _, _>(&k, census, data, h, prm, store)
        } else {
            aggregate_and_pick::<u16, _, _>(&k, census, data, h, prm, store)
        };
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    if crate::sgm::simd() == crate::sgm::Simd::Neon {
        return if bytes {
            aggregate_and_pick::<u8, _, _>(&Neon, census, data, h, prm, store)
        } else {
            aggregate_and_pick::<u16, _, _>(&Neon, census, data, h, prm, store)
        };
    }
    if bytes {
        aggregate_and_pick::<u8, _, _>(&Base, census, data, h, prm, store)
    } else {
        aggregate_and_pick::<u16, _, _>(&Base, census, data, h, prm, store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sgm::tests::textured;

    /// One whole pass: every row's path sums, 16-bit.
    fn full_pass<T: Cell, Kr: Kernel + PixelOps>(
        kr: &Kr,
        census: &CensusPair<u32>,
        img: &GrayImage,
        prm: &SgmParams,
        backward: bool,
    ) -> Vec<u16> {
        let (w, h, dn) = (img.width, img.height, census.dn);
        let mut pass = Pass::<T>::new(w, h, dn, prm, backward);
        let mut out = vec![0u16; w * h * dn];
        pass.run(
            kr,
            census,
            &img.data,
            h,
            RowSink::Raw {
                out: &mut out,
                y0: 0,
            },
        );
        out
    }

    #[test]
    fn byte_and_word_kernels_and_instruction_sets_agree_exactly() {
        // 64 disparities: two chunks of the AVX2 byte kernel.
        let (w, h, dn) = (88, 20, 64);
        let (l, r) = (textured(w, h, 5), textured(w, h, 0));
        let prm = SgmParams {
            max_disp: dn,
            ..SgmParams::default()
        };
        assert!(fits_u8(&prm));
        let census = CensusPair::<u32>::new(&l, &r, 5, dn);
        for paths in [Paths::Eight, Paths::Four] {
            let prm = SgmParams { paths, ..prm };
            for backward in [false, true] {
                let a = full_pass::<u8, _>(&Base, &census, &l, &prm, backward);
                let b = full_pass::<u16, _>(&Base, &census, &l, &prm, backward);
                assert_eq!(a, b, "{paths:?} backward={backward}");
                #[cfg(target_arch = "x86_64")]
                if let Some(k) = Avx2::detect() {
                    let c = full_pass::<u8, _>(&k, &census, &l, &prm, backward);
                    assert_eq!(a, c);
                }
                #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
                {
                    let c = full_pass::<u8, _>(&Neon, &census, &l, &prm, backward);
                    assert_eq!(a, c, "NEON, {paths:?} backward={backward}");
                }
            }
        }
    }

    #[test]
    fn meeting_in_the_middle_equals_two_whole_passes() {
        // 16 disparities: the per-pixel kernels; 64: the AVX2 whole-row kernel.
        for (w, h, dn) in [(40, 17, 16), (100, 15, 64)] {
            let (l, r) = (textured(w, h, 6), textured(w, h, 0));
            let census = CensusPair::<u32>::new(&l, &r, 5, dn);
            for paths in [Paths::Eight, Paths::Four] {
                // A loose uniqueness test, so that most pixels are compared.
                let prm = SgmParams {
                    max_disp: dn,
                    paths,
                    uniqueness: 0.05,
                    ..SgmParams::default()
                };
                let f = full_pass::<u8, _>(&Base, &census, &l, &prm, false);
                let b = full_pass::<u8, _>(&Base, &census, &l, &prm, true);
                let mut totals: Vec<u16> = f.iter().zip(&b).map(|(a, c)| a + c).collect();
                let whole = post::winner_take_all(&mut totals, w, h, dn, prm.uniqueness);
                let mut store = HalfSums::default();
                let met =
                    aggregate_and_pick::<u8, _, _>(&Base, &census, &l.data, h, &prm, &mut store);
                assert_eq!(whole.left.disp, met.left.disp, "{paths:?} D {dn}");
                assert_eq!(whole.left.valid, met.left.valid, "{paths:?} D {dn}");
                assert_eq!(whole.right, met.right, "{paths:?} D {dn}");
                #[cfg(target_arch = "x86_64")]
                if let Some(k) = Avx2::detect() {
                    let fast =
                        aggregate_and_pick::<u8, _, _>(&k, &census, &l.data, h, &prm, &mut store);
                    assert_eq!(fast.left.disp, met.left.disp, "{paths:?} D {dn}");
                    assert_eq!(fast.left.valid, met.left.valid, "{paths:?} D {dn}");
                    assert_eq!(fast.right, met.right, "{paths:?} D {dn}");
                }
                #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
                {
                    let fast = aggregate_and_pick::<u8, _, _>(
                        &Neon, &census, &l.data, h, &prm, &mut store,
                    );
                    assert_eq!(fast.left.disp, met.left.disp, "NEON {paths:?} D {dn}");
                    assert_eq!(fast.left.valid, met.left.valid, "NEON {paths:?} D {dn}");
                    assert_eq!(fast.right, met.right, "NEON {paths:?} D {dn}");
                }
                let valid = met.left.valid.iter().filter(|&&v| v).count();
                assert!(valid > w * h / 2, "{paths:?} D {dn}: {valid} valid");
            }
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx2_pixel_ops_equal_the_generic_ones() {
        let Some(k) = Avx2::detect() else { return };
        pixel_ops_equal_the_generic_ones(&k);
    }

    #[test]
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    fn neon_pixel_ops_equal_the_generic_ones() {
        pixel_ops_equal_the_generic_ones(&Neon);
    }

    /// Squeeze, unsqueeze and pick of `k` against the generic code on random sums.
    #[allow(dead_code)] // on targets without hand-written kernels
    fn pixel_ops_equal_the_generic_ones(k: &impl PixelOps) {
        let mut rng = sim::rng::Rng::new(9);
        for dn in [8, 16, 24, 32, 48, 64, 128] {
            for case in 0..200 {
                // Narrow value ranges make ties (first index wins) and equal
                // neighbours common; wide ones exercise the saturation at 255.
                let spread = [4, 40, 1200][case % 3];
                let sums: Vec<u16> = (0..dn).map(|_| 100 + rng.below(spread) as u16).collect();
                let (mut a, mut b) = (vec![0u8; dn], vec![0u8; dn]);
                let base = squeeze(&sums, &mut a);
                assert_eq!(k.squeeze(&sums, &mut b), base);
                assert_eq!(a, b, "squeeze, D {dn}");
                let n_valid = 1 + rng.below(dn as u64) as usize;
                let keep = [0.8, 1.0, 0.3, 0.999, 0.01][case % 5];
                let mine: Vec<u16> = (0..dn).map(|_| rng.below(spread) as u16).collect();
                let (mut t1, mut t2) = (vec![0u16; dn], vec![0u16; dn]);
                let b1 = Base.unsqueeze(&mine, (&a, base), n_valid, &mut t1);
                let b2 = k.unsqueeze(&mine, (&a, base), n_valid, &mut t2);
                assert_eq!((b1, &t1), (b2, &t2), "unsqueeze, D {dn}, n_valid {n_valid}");
                let want = Base.pick(&t1, b1, n_valid, keep);
                let got = k.pick(&t2, b2, n_valid, keep);
                assert_eq!(got, want, "pick, D {dn}, n_valid {n_valid}");
            }
        }
    }

    #[test]
    fn stored_half_sums_round_trip_and_saturate_only_far_from_the_best() {
        let sums: Vec<u16> = (0..16u16).map(|i| 40 + i * 30).collect();
        let mut e = vec![0u8; 16];
        let base = squeeze(&sums, &mut e);
        assert_eq!(base, 40);
        let mut back = vec![0u16; 16];
        unsqueeze(&mut back, &e, base);
        for (i, (&got, &want)) in back.iter().zip(&sums).enumerate() {
            // Exact up to 255 above the pixel's best, saturated beyond.
            assert_eq!(got, want.min(40 + 255), "{i}");
        }
    }
}
