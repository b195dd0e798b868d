//! Census transform: each pixel becomes a bit string of "neighbour darker than
//! centre" over a square window, robust to gain and bias differences between the
//! two cameras. Matching cost is the Hamming distance of two strings.

use crate::image::GrayImage;
use rayon::prelude::*;

/// A census bit string: 32 bits hold windows up to 5x5, 64 bits up to 7x7. The
/// narrower word doubles the SIMD lanes of the census and cost loops.
pub trait CensusWord: Copy + Default + Send + Sync + 'static {
    /// Shift in one more comparison bit.
    fn push(self, bit: bool) -> Self;
    /// Or `byte` in as the word's `k`-th byte (bits `8k..8k + 8`).
    fn with_byte(self, byte: u8, k: usize) -> Self;
    /// Hamming distance.
    fn hamming(self, other: Self) -> u8;
    /// Bits the word holds.
    const BITS: u32;
}

impl CensusWord for u32 {
    #[inline(always)]
    fn push(self, bit: bool) -> Self {
        (self << 1) | bit as u32
    }
    #[inline(always)]
    fn with_byte(self, byte: u8, k: usize) -> Self {
        self | (byte as u32) << (8 * k)
    }
    #[inline(always)]
    fn hamming(self, other: Self) -> u8 {
        (self ^ other).count_ones() as u8
    }
    const BITS: u32 = 32;
}

impl CensusWord for u64 {
    #[inline(always)]
    fn push(self, bit: bool) -> Self {
        (self << 1) | bit as u64
    }
    #[inline(always)]
    fn with_byte(self, byte: u8, k: usize) -> Self {
        self | (byte as u64) << (8 * k)
    }
    #[inline(always)]
    fn hamming(self, other: Self) -> u8 {
        (self ^ other).count_ones() as u8
    }
    const BITS: u32 = 64;
}

/// Census strings of an image for a `window` x `window` neighbourhood (odd, 3 to 7;
/// the word must hold `window² - 1` bits). Pixels closer than `window / 2` to the
/// border get 0.
pub fn census<W: CensusWord>(img: &GrayImage, window: usize) -> Vec<W> {
    debug_assert!(bits(window) <= W::BITS);
    let (w, h) = (img.width, img.height);
    let r = window / 2;
    let mut out = vec![W::default(); w * h];
    if w <= 2 * r || h <= 2 * r {
        return out;
    }
    let avx2 = crate::sgm::uses_avx2();
    out.par_chunks_mut(w)
        .enumerate()
        .for_each_init(Vec::new, |plane, (y, row)| {
            if y < r || y + r >= h {
                return;
            }
            let src = RowOf {
                data: &img.data,
                w,
                y,
                window,
            };
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                // SAFETY: AVX2 was detected on this CPU, the only requirement of
                // `census_row_avx2`, whose body is safe Rust.
                unsafe { census_row_avx2(src, row, plane) };
                return;
            }
            let _ = avx2;
            census_row(src, row, plane)
        });
    out
}

/// Census of one row (not the border rows). The string is built a byte at a
/// time: eight window offsets compared across the row into a byte per pixel
/// (`plane`, scratch of the row's width), which is then or-ed into the words —
/// the comparisons run on byte lanes, four times as many per vector as on the
/// words. Bit `bits - 1 - i` holds the `i`-th offset in raster order (centre
/// skipped), as if the comparisons were shifted in one by one.
#[inline(always)]
fn census_row<W: CensusWord>(src: RowOf, row: &mut [W], plane: &mut Vec<u8>) {
    let RowOf { data, w, y, window } = src;
    let r = window / 2;
    let n = w - 2 * r;
    let nbits = bits(window) as usize;
    let centre = &data[y * w + r..y * w + w - r];
    let dst = &mut row[r..w - r];
    dst.fill(W::default());
    plane.resize(n, 0);
    let plane = &mut plane[..n];
    // The window offset of the i-th comparison (raster order, centre skipped).
    let offset = |i: usize| {
        let j = if i >= window * r + r { i + 1 } else { i };
        (j / window, j % window)
    };
    for k in 0..nbits.div_ceil(8) {
        plane.fill(0);
        for bit in 0..8.min(nbits - 8 * k) {
            let (dy, dx) = offset(nbits - 1 - (8 * k + bit));
            let base = (y + dy - r) * w + dx;
            let nb = &data[base..base + n];
            for ((o, &p), &c) in plane.iter_mut().zip(nb).zip(centre) {
                *o |= ((p < c) as u8) << bit;
            }
        }
        for (o, &b) in dst.iter_mut().zip(plane.iter()) {
            *o = o.with_byte(b, k);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn census_row_avx2<W: CensusWord>(src: RowOf, row: &mut [W], plane: &mut Vec<u8>) {
    census_row(src, row, plane)
}

/// Row `y` of a `w` pixels wide image `data`, with the census `window`.
#[derive(Clone, Copy)]
struct RowOf<'a> {
    data: &'a [u8],
    w: usize,
    y: usize,
    window: usize,
}

/// Number of bits a census window produces.
pub fn bits(window: usize) -> u32 {
    (window * window - 1) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn census_is_invariant_to_gain_and_bias_and_detects_structure() {
        let w = 16;
        let data: Vec<u8> = (0..w * w).map(|i| ((i * 37) % 101) as u8).collect();
        let a = GrayImage::new(w, w, data.clone(), "left").unwrap();
        let b = GrayImage::new(w, w, data.iter().map(|&v| v * 2 + 10).collect(), "left").unwrap();
        assert_eq!(census::<u32>(&a, 5), census::<u32>(&b, 5));
        let c = census::<u64>(&a, 5);
        assert_eq!(c[0], 0);
        assert!(c[5 * w + 5] != 0);
        assert!(c.iter().all(|v| v.count_ones() <= bits(5)));
        assert!(census::<u64>(&a, 7).iter().any(|v| v.count_ones() > 24));
        let c32 = census::<u32>(&a, 5);
        assert!(c32.iter().zip(&c).all(|(a, b)| *a as u64 == *b));
    }

    #[test]
    fn bytewise_census_equals_shifting_in_every_comparison() {
        let (w, h) = (37, 11);
        let mut rng = sim::rng::Rng::new(3);
        let data: Vec<u8> = (0..w * h).map(|_| rng.below(256) as u8).collect();
        let img = GrayImage::new(w, h, data.clone(), "left").unwrap();
        for window in [3, 5, 7] {
            let r = window / 2;
            let got = census::<u64>(&img, window);
            for y in r..h - r {
                for x in r..w - r {
                    let c = data[y * w + x];
                    let mut want = 0u64;
                    for dy in 0..window {
                        for dx in 0..window {
                            if (dy, dx) != (r, r) {
                                want = want.push(data[(y + dy - r) * w + x + dx - r] < c);
                            }
                        }
                    }
                    assert_eq!(got[y * w + x], want, "window {window} at ({x}, {y})");
                }
            }
        }
    }
}
