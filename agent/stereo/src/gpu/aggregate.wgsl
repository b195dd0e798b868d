// Path aggregation (crate::paths): one workgroup per scan line.

@group(0) @binding(1) var<storage, read> aimg: array<u32>;
@group(0) @binding(2) var<storage, read> cl: array<vec2<u32>>;
@group(0) @binding(3) var<storage, read> cr: array<vec2<u32>>;
@group(0) @binding(4) var<storage, read> p2t: array<u32, 256>;
// The pass's path sums, two 16-bit disparities to a word: [y][x][d].
@group(0) @binding(5) var<storage, read_write> sums: array<u32>;

// Invocations per workgroup: at least half the disparities.
override WG: u32 = 64u;
// Beyond the disparity range: never the minimum (pm + P1 > any L).
const FAR: u32 = 0x3fffffffu;

// One scan line's path costs of the previous pixel, with a FAR sentinel at
// each end (index d + 1 holds disparity d), and their minimum, gathered with
// atomics in one of two slots by turns (a step fills one while the other,
// read in the step before, is reset for the step after).
var<workgroup> prev: array<u32, 258>;
var<workgroup> least: array<atomic<u32>, 2>;

fn apixel(i: u32) -> u32 {
    return (aimg[i >> 2u] >> ((i & 3u) * 8u)) & 255u;
}

// Census Hamming cost of left pixel (x, y) at disparity d; beyond the left
// border the largest cost.
fn cost(x: u32, y: u32, d: u32) -> u32 {
    if d > x {
        return prm.nbits;
    }
    let a = cl[y * prm.w + x];
    let b = cr[y * prm.w + x - d];
    return countOneBits(a.x ^ b.x) + countOneBits(a.y ^ b.y);
}

// One path direction over the whole image: a workgroup walks one scan line,
// each invocation two disparities. L(p, d) = C(p, d) + min(L(p-r, d),
// L(p-r, d±1) + P1, min L(p-r) + P2(p)) - min L(p-r); L = C where the line
// enters the image. P2 is looked up from the intensity step |I(p) - I(p-r)|.
@compute @workgroup_size(WG)
fn aggregate(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let w = i32(prm.w);
    let h = i32(prm.h);
    let dx = prm.dx;
    let dy = prm.dy;
    let line = i32(wid.x);
    // Where the line enters: a row (horizontal), a column (vertical), or, for
    // a diagonal, a pixel of the first row it walks from or of the side column.
    var x = 0;
    var y = 0;
    if dy == 0 {
        y = line;
        x = select(w - 1, 0, dx > 0);
    } else if dx == 0 {
        x = line;
        y = select(h - 1, 0, dy > 0);
    } else if line < w {
        x = line;
        y = select(h - 1, 0, dy > 0);
    } else {
        let k = line - w + 1;
        x = select(w - 1, 0, dx > 0);
        y = select(h - 1 - k, k, dy > 0);
    }
    let d0 = 2u * li;
    let live = d0 < prm.dn;
    if li == 0u {
        prev[0] = FAR;
        prev[prm.dn + 1u] = FAR;
        atomicStore(&least[0], FAR);
        atomicStore(&least[1], FAR);
    }
    var pmin = 0u;
    var first = true;
    var pred = 0u;
    var slot = 0u;
    loop {
        if x < 0 || x >= w || y < 0 || y >= h {
            break;
        }
        let ux = u32(x);
        let uy = u32(y);
        let here = uy * prm.w + ux;
        var l0 = FAR;
        var l1 = FAR;
        if live {
            let c0 = cost(ux, uy, d0);
            let c1 = cost(ux, uy, d0 + 1u);
            if first {
                l0 = c0;
                l1 = c1;
            } else {
                let g = abs(i32(apixel(here)) - i32(apixel(pred)));
                let lim = pmin + p2t[g];
                let a = prev[d0];
                let b = prev[d0 + 1u];
                let c = prev[d0 + 2u];
                let e = prev[d0 + 3u];
                l0 = c0 + min(min(b, min(a, c) + prm.p1), lim) - pmin;
                l1 = c1 + min(min(c, min(b, e) + prm.p1), lim) - pmin;
            }
            let k = (here * prm.dn + d0) >> 1u;
            let v = l0 | (l1 << 16u);
            if prm.first != 0u {
                sums[k] = v;
            } else {
                sums[k] = sums[k] + v;
            }
        }
        // Everyone has read the previous pixel's costs and minimum: replace
        // them, and reset the other slot (read one step ago) for the next.
        workgroupBarrier();
        if live {
            prev[d0 + 1u] = l0;
            prev[d0 + 2u] = l1;
            atomicMin(&least[slot], min(l0, l1));
        }
        if li == 0u {
            atomicStore(&least[1u - slot], FAR);
        }
        workgroupBarrier();
        pmin = atomicLoad(&least[slot]);
        slot = 1u - slot;
        first = false;
        pred = here;
        x += dx;
        y += dy;
    }
}

