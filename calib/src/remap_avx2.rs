//! The fixed-point remap's AVX2 kernel: eight rectified pixels per step, their
//! 2 x 2 source neighbourhoods fetched with two 32-bit gathers (the top pair
//! and the bottom pair of bytes of each), blended in 32-bit lanes with the
//! same integer arithmetic as the scalar loop, so the output is bit-identical.
//!
//! The only unsafe code of the crate: the intrinsics, and gathers whose
//! offsets the map has checked when it was built (see [`run`]).
#![allow(unsafe_code)]

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
    debug_assert!(
        index.len() == out.len() && weight.len() == out.len() && out.len().is_multiple_of(8)
    );
    let byte = _mm256_set1_epi32(0xff);
    let low16 = _mm256_set1_epi32(0xffff);
    let half = _mm256_set1_epi32(32768);
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
            let fx = _mm256_and_si256(wt, low16);
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
            let r = _mm256_srai_epi32::<16>(_mm256_add_epi32(r, half));
            // Each lane holds 0..=255: pack to bytes (per 128-bit half), then
            // put the halves' first four bytes side by side.
            let p = _mm256_packus_epi16(_mm256_packus_epi32(r, r), _mm256_setzero_si256());
            let v = _mm_unpacklo_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256::<1>(p));
            _mm_storel_epi64(out.as_mut_ptr().add(k).cast(), v);
        }
    }
}
