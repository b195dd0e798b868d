//! The fixed-point remap's AVX2 kernels: eight rectified pixels per step,
//! blended in 32-bit lanes with the same integer arithmetic as the scalar
//! loop, so the output is bit-identical. They differ in how the 2 x 2 source
//! neighbourhoods are fetched:
//! - [`run_windows`]: a rectifying map moves neighbouring pixels by nearly
//!   the same amount, so eight neighbourhoods usually lie in one 16-byte window
//!   of two or three rows; three row loads and four byte shuffles fetch them all;
//! - [`run`]: any eight neighbourhoods, with two 32-bit gathers (the top pair
//!   and the bottom pair of bytes of each), for groups that fit no window.
//!   Gathers are microcoded on many x86 cores (several cycles per element).
//!
//! The only unsafe code of the crate: the intrinsics, and reads whose
//! offsets the map has checked when it was built (see [`run`], [`run_windows`]).
#![allow(unsafe_code)]

use crate::rectify::Window;
use std::arch::x86_64::*;

/// Whether this CPU runs the kernel.
pub(crate) fn available() -> bool {
    std::is_x86_feature_detected!("avx2")
}

/// Remaps `out.len()` pixels (a multiple of 8) whose top-left source indices
/// and packed weights (`fx | fy << 16`) are `index` and `weight`.
///
/// # Safety
/// The CPU has AVX2; `index`, `weight` and `out` have the same length, a
/// multiple of 8; every index `i` satisfies `i + w + 4 <= src.len()` and
/// `src.len() <= i32::MAX` (each gather reads 4 bytes at `i` and at `i + w`).
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn run(src: &[u8], w: usize, index: &[u32], weight: &[u32], out: &mut [u8]) {
    assert!(
        index.len() == out.len() && weight.len() == out.len() && out.len().is_multiple_of(8),
        "gather kernel: index, weight and output lengths differ or are no multiple of 8"
    );
    let byte = _mm256_set1_epi32(0xff);
    let base = src.as_ptr();
    for k in (0..out.len()).step_by(8) {
        // SAFETY: k + 8 <= len for index, weight and out (same length, a
        // multiple of 8); the gathers stay inside src by the caller's
        // guarantee on every index; loads and stores are unaligned.
        unsafe {
            let idx = _mm256_loadu_si256(index.as_ptr().add(k).cast());
            let wt = _mm256_loadu_si256(weight.as_ptr().add(k).cast());
            let top = _mm256_i32gather_epi32::<1>(base.cast(), idx);
            let bot = _mm256_i32gather_epi32::<1>(base.add(w).cast(), idx);
            let a = _mm256_and_si256(top, byte);
            let b = _mm256_and_si256(_mm256_srli_epi32::<8>(top), byte);
            let c = _mm256_and_si256(bot, byte);
            let d = _mm256_and_si256(_mm256_srli_epi32::<8>(bot), byte);
            let v = blend(a, b, c, d, wt);
            _mm_storel_epi64(out.as_mut_ptr().add(k).cast(), v);
        }
    }
}

/// Remaps `out.len()` pixels (a multiple of 8), one [`Window`] per group of 8,
/// with packed weights (`fx | fy << 16`) `weight`.
///
/// # Safety
/// The CPU has AVX2; `out.len() == weight.len() == 8 * windows.len()`; every
/// window satisfies `base + 2 * w + 16 <= src.len()` (three 16-byte reads at
/// `base`, `base + w`, `base + 2w`).
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn run_windows(
    src: &[u8],
    w: usize,
    windows: &[Window],
    weight: &[u32],
    out: &mut [u8],
) {
    assert!(
        weight.len() == out.len() && out.len() == 8 * windows.len(),
        "window kernel: weight, output and window counts differ"
    );
    let base = src.as_ptr();
    for (g, win) in windows.iter().enumerate() {
        let k = 8 * g;
        // SAFETY: k + 8 <= len for weight and out; the three row reads stay
        // inside src by the caller's guarantee on every window; loads and
        // stores are unaligned.
        unsafe {
            let p = base.add(win.base as usize);
            let r0 = _mm_loadu_si128(p.cast());
            let r1 = _mm_loadu_si128(p.add(w).cast());
            let r2 = _mm_loadu_si128(p.add(2 * w).cast());
            let m0 = _mm_loadu_si128(win.pick[0].as_ptr().cast());
            let m1 = _mm_loadu_si128(win.pick[1].as_ptr().cast());
            // Bytes 0..8: the left sources of the 8 pixels, 8..16: the right.
            let top = _mm_or_si128(_mm_shuffle_epi8(r0, m0), _mm_shuffle_epi8(r1, m1));
            let bot = _mm_or_si128(_mm_shuffle_epi8(r1, m0), _mm_shuffle_epi8(r2, m1));
            let a = _mm256_cvtepu8_epi32(top);
            let b = _mm256_cvtepu8_epi32(_mm_srli_si128::<8>(top));
            let c = _mm256_cvtepu8_epi32(bot);
            let d = _mm256_cvtepu8_epi32(_mm_srli_si128::<8>(bot));
            let wt = _mm256_loadu_si256(weight.as_ptr().add(k).cast());
            let v = blend(a, b, c, d, wt);
            _mm_storel_epi64(out.as_mut_ptr().add(k).cast(), v);
        }
    }
}

/// The scalar loop's blend of eight pixels whose top-left, top-right,
/// bottom-left and bottom-right sources are `a`, `b`, `c`, `d` (0..=255 in
/// 32-bit lanes), weights `fx | fy << 16`: eight bytes in the low half.
#[inline]
#[target_feature(enable = "avx2")]
fn blend(a: __m256i, b: __m256i, c: __m256i, d: __m256i, wt: __m256i) -> __m128i {
    let fx = _mm256_and_si256(wt, _mm256_set1_epi32(0xffff));
    let fy = _mm256_srli_epi32::<16>(wt);
    let t = _mm256_add_epi32(
        _mm256_slli_epi32::<8>(a),
        _mm256_mullo_epi32(_mm256_sub_epi32(b, a), fx),
    );
    let u = _mm256_add_epi32(
        _mm256_slli_epi32::<8>(c),
        _mm256_mullo_epi32(_mm256_sub_epi32(d, c), fx),
    );
    let r = _mm256_add_epi32(
        _mm256_slli_epi32::<8>(t),
        _mm256_mullo_epi32(_mm256_sub_epi32(u, t), fy),
    );
    let r = _mm256_srai_epi32::<16>(_mm256_add_epi32(r, _mm256_set1_epi32(32768)));
    // Each lane holds 0..=255: pack to bytes (per 128-bit half), then put the
    // halves' first four bytes side by side.
    let p = _mm256_packus_epi16(_mm256_packus_epi32(r, r), _mm256_setzero_si256());
    _mm_unpacklo_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256::<1>(p))
}
