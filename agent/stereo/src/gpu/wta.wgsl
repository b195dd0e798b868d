// Winner-take-all, integer part (crate::post::pick): one invocation per pixel.

@group(0) @binding(1) var<storage, read> sf: array<u32>;
@group(0) @binding(2) var<storage, read> sb: array<u32>;
// Per pixel: best | second << 16, below | above << 16, the best's disparity.
@group(0) @binding(3) var<storage, read_write> picks: array<u32>;

const MAX16: u32 = 0xffffu;

fn f_at(i: u32) -> u32 {
    return (sf[i >> 1u] >> ((i & 1u) * 16u)) & MAX16;
}

fn b_at(i: u32) -> u32 {
    return (sb[i >> 1u] >> ((i & 1u) * 16u)) & MAX16;
}

// The total cost of disparity d, as the CPU's meeting passes form it: the
// finishing pass's own sums plus the stored pass's sums kept as their
// minimum and byte excesses over it (saturated at 255); u16::MAX beyond the
// image border (d >= n_valid).
fn total(i: u32, d: u32, top: bool, mf: u32, mb: u32, nv: u32) -> u32 {
    if d >= nv {
        return MAX16;
    }
    let f = f_at(i + d);
    let b = b_at(i + d);
    if top {
        return b + min(f - mf, 255u) + mf;
    }
    return f + min(b - mb, 255u) + mb;
}

// The integer part of the CPU's pick (crate::post::pick): the smallest total
// and its first disparity, the smallest total further than one disparity
// from it, and the totals just below and above it.
@compute @workgroup_size(8, 8)
fn wta(@builtin(global_invocation_id) gid: vec3<u32>) {
    let x = gid.x;
    let y = gid.y;
    if x >= prm.w || y >= prm.h {
        return;
    }
    let dn = prm.dn;
    let i = (y * prm.w + x) * dn;
    var mf = MAX16;
    var mb = MAX16;
    for (var d = 0u; d < dn; d++) {
        mf = min(mf, f_at(i + d));
        mb = min(mb, b_at(i + d));
    }
    let top = y < prm.mid;
    let nv = min(x + 1u, dn);
    var best = MAX16;
    var bd = 0u;
    for (var d = 0u; d < dn; d++) {
        let t = total(i, d, top, mf, mb, nv);
        if t < best {
            best = t;
            bd = d;
        }
    }
    var second = MAX16;
    for (var d = 0u; d < dn; d++) {
        if d + 1u < bd || d >= bd + 2u {
            second = min(second, total(i, d, top, mf, mb, nv));
        }
    }
    var below = MAX16;
    if bd > 0u {
        below = total(i, bd - 1u, top, mf, mb, nv);
    }
    var above = MAX16;
    if bd + 1u < dn {
        above = total(i, bd + 1u, top, mf, mb, nv);
    }
    let o = 3u * (y * prm.w + x);
    picks[o] = best | (second << 16u);
    picks[o + 1u] = below | (above << 16u);
    picks[o + 2u] = bd;
}
