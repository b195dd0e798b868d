// Semi-global matching on the GPU: census transform, path aggregation and the
// integer part of winner-take-all. Every step uses the CPU matcher's integer
// arithmetic (crate::census, crate::paths, crate::pass, crate::post), so the
// results are the same numbers; the host finishes with the CPU's float steps.
//
// This header (the uniform block every kernel reads) is prepended to each
// kernel's source: census.wgsl, aggregate.wgsl, wta.wgsl.

struct Params {
    w: u32,
    h: u32,
    // Disparities searched (a multiple of 16, at most 256).
    dn: u32,
    // Census window (3, 5 or 7) and its number of bits (window² - 1), which is
    // also the cost of a disparity beyond the left border.
    window: u32,
    nbits: u32,
    p1: u32,
    // The path's direction (aggregation): each step goes (dx, dy).
    dx: i32,
    dy: i32,
    // 1: this path is the first of its pass and stores its costs; 0: it adds.
    first: u32,
    // Rows above `mid` are finished by the backward pass (their forward sums
    // are the stored ones), rows from `mid` on by the forward pass.
    mid: u32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> prm: Params;

