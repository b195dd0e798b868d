// Census transform (crate::census): one invocation per pixel.

@group(0) @binding(1) var<storage, read> cimg: array<u32>;
@group(0) @binding(2) var<storage, read_write> cout: array<vec2<u32>>;

// Pixel `i` of an image packed four 8-bit pixels to a word (little-endian).
fn cpixel(i: u32) -> u32 {
    return (cimg[i >> 2u] >> ((i & 3u) * 8u)) & 255u;
}

// The census string of a pixel: bit `nbits - 1 - i` is set when the i-th
// window offset (raster order, centre skipped) is darker than the centre;
// bits 0..32 in .x, 32..64 in .y. Pixels nearer the border than window / 2
// get 0.
@compute @workgroup_size(8, 8)
fn census(@builtin(global_invocation_id) gid: vec3<u32>) {
    let x = gid.x;
    let y = gid.y;
    if x >= prm.w || y >= prm.h {
        return;
    }
    let r = prm.window / 2u;
    var lo = 0u;
    var hi = 0u;
    if x >= r && x + r < prm.w && y >= r && y + r < prm.h {
        let c = cpixel(y * prm.w + x);
        let centre = prm.window * r + r;
        for (var i = 0u; i < prm.nbits; i++) {
            let j = select(i, i + 1u, i >= centre);
            let oy = j / prm.window;
            let ox = j % prm.window;
            if cpixel((y + oy - r) * prm.w + x + ox - r) < c {
                let b = prm.nbits - 1u - i;
                if b < 32u {
                    lo |= 1u << b;
                } else {
                    hi |= 1u << (b - 32u);
                }
            }
        }
    }
    cout[y * prm.w + x] = vec2<u32>(lo, hi);
}

