//! The path recurrence of semi-global matching, L(p, d) = C(p, d) + min(L(p-r, d),
//! L(p-r, d±1) + P1, min L(p-r) + P2) - min L(p-r): the generic kernels (four or
//! two paths fused per pixel), compiled once per instruction set, and one image row
//! of a pass ([`RowJob`]).

/// Element type of the path costs L. With the default penalties L never exceeds
/// 255 (it is bounded by the largest census cost plus P2), so paths run on bytes —
/// twice the SIMD lanes of 16-bit words; larger penalties fall back to u16.
pub(crate) trait Cell: Copy + Ord + Send + Sync + 'static {
    /// Sentinel beyond the disparity range.
    const FAR: Self;
    const ZERO: Self;
    fn sat_add(self, o: Self) -> Self;
    fn wsub(self, o: Self) -> Self;
    fn wadd(self, o: Self) -> Self;
    fn from_u16(v: u16) -> Self;
    fn widen(self) -> u16;
    /// Run a row (D a multiple of 32) through the whole-row AVX2 kernel if there is
    /// one for this cell type (`None`: done), else hand it back.
    #[cfg(target_arch = "x86_64")]
    fn avx2_row<'a>(
        job: RowJob<'a, Self>,
        isa: &Avx2,
        each: &mut impl FnMut(usize, &mut [u16]),
    ) -> Option<RowJob<'a, Self>>;
    /// Run a row (D a multiple of 16) through the whole-row NEON kernel if there
    /// is one for this cell type (`None`: done), else hand it back.
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    fn neon_row<'a>(
        job: RowJob<'a, Self>,
        each: &mut impl FnMut(usize, &mut [u16]),
    ) -> Option<RowJob<'a, Self>>;
}

impl Cell for u8 {
    const FAR: Self = u8::MAX;
    const ZERO: Self = 0;
    #[inline(always)]
    fn sat_add(self, o: Self) -> Self {
        self.saturating_add(o)
    }
    #[inline(always)]
    fn wsub(self, o: Self) -> Self {
        self.wrapping_sub(o)
    }
    #[inline(always)]
    fn wadd(self, o: Self) -> Self {
        self.wrapping_add(o)
    }
    #[inline(always)]
    fn from_u16(v: u16) -> Self {
        v.min(255) as u8
    }
    #[inline(always)]
    fn widen(self) -> u16 {
        self as u16
    }
    #[cfg(target_arch = "x86_64")]
    fn avx2_row<'a>(
        job: RowJob<'a, Self>,
        _isa: &Avx2,
        each: &mut impl FnMut(usize, &mut [u16]),
    ) -> Option<RowJob<'a, Self>> {
        // SAFETY: an `Avx2` value exists only after AVX2 was detected on this CPU
        // (`Avx2::detect`), the only requirement of `avx2::row`.
        unsafe { crate::avx2::row(job, each) };
        None
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    fn neon_row<'a>(
        job: RowJob<'a, Self>,
        each: &mut impl FnMut(usize, &mut [u16]),
    ) -> Option<RowJob<'a, Self>> {
        crate::neon::row(job, each);
        None
    }
}

impl Cell for u16 {
    const FAR: Self = 0x3000;
    const ZERO: Self = 0;
    #[inline(always)]
    fn sat_add(self, o: Self) -> Self {
        self.saturating_add(o)
    }
    #[inline(always)]
    fn wsub(self, o: Self) -> Self {
        self.wrapping_sub(o)
    }
    #[inline(always)]
    fn wadd(self, o: Self) -> Self {
        self.wrapping_add(o)
    }
    #[inline(always)]
    fn from_u16(v: u16) -> Self {
        v
    }
    #[inline(always)]
    fn widen(self) -> u16 {
        self
    }
    #[cfg(target_arch = "x86_64")]
    fn avx2_row<'a>(
        job: RowJob<'a, Self>,
        _isa: &Avx2,
        _each: &mut impl FnMut(usize, &mut [u16]),
    ) -> Option<RowJob<'a, Self>> {
        Some(job)
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    fn neon_row<'a>(
        job: RowJob<'a, Self>,
        _each: &mut impl FnMut(usize, &mut [u16]),
    ) -> Option<RowJob<'a, Self>> {
        Some(job)
    }
}

/// One path's state going into a step: predecessor costs (with a sentinel at each
/// end, length D + 2), their minimum, and the P2 that applies.
#[derive(Clone, Copy)]
pub(crate) struct Prev<'a, T> {
    pub l: &'a [T],
    pub min: T,
    pub p2: T,
}

/// The recurrence of one path at one disparity:
/// L(p, d) = C(p, d) + min(L(p-r, d), L(p-r, d±1) + P1, min L(p-r) + P2) - min L(p-r).
/// Never overflows: the minimum is at least `min`, and C + P2 fits the type.
#[inline(always)]
fn lr<T: Cell>(cd: T, pm: T, p0: T, pp: T, p1: T, lim: T, min: T) -> T {
    cd.wadd(
        p0.min(pm.sat_add(p1))
            .min(pp.sat_add(p1))
            .min(lim)
            .wsub(min),
    )
}

/// Four paths at one pixel, fused so that the cost is read once and the pass's sum
/// written once (S = sum of the paths' L). Separate slice arguments let the
/// compiler prove they do not alias and vectorise over d. Returns the new minima.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn fused4<T: Cell>(
    c: &[u8],
    al: &[T],
    bl: &[T],
    el: &[T],
    fl: &[T],
    mins: [T; 4],
    p2s: [T; 4],
    oa: &mut [T],
    ob: &mut [T],
    oe: &mut [T],
    of: &mut [T],
    s: &mut [u16],
    p1: T,
) -> [T; 4] {
    let dn = c.len();
    let (s, oa, ob, oe, of) = (
        &mut s[..dn],
        &mut oa[1..dn + 1],
        &mut ob[1..dn + 1],
        &mut oe[1..dn + 1],
        &mut of[1..dn + 1],
    );
    let (al, bl, el, fl) = (&al[..dn + 2], &bl[..dn + 2], &el[..dn + 2], &fl[..dn + 2]);
    let lim: [T; 4] = std::array::from_fn(|k| mins[k].sat_add(p2s[k]));
    let mut m = [T::FAR; 4];
    for d in 0..dn {
        let cd = T::from_u16(c[d] as u16);
        let va = lr(cd, al[d], al[d + 1], al[d + 2], p1, lim[0], mins[0]);
        let vb = lr(cd, bl[d], bl[d + 1], bl[d + 2], p1, lim[1], mins[1]);
        let ve = lr(cd, el[d], el[d + 1], el[d + 2], p1, lim[2], mins[2]);
        let vf = lr(cd, fl[d], fl[d + 1], fl[d + 2], p1, lim[3], mins[3]);
        oa[d] = va;
        ob[d] = vb;
        oe[d] = ve;
        of[d] = vf;
        m[0] = m[0].min(va);
        m[1] = m[1].min(vb);
        m[2] = m[2].min(ve);
        m[3] = m[3].min(vf);
        s[d] = va.widen() + vb.widen() + ve.widen() + vf.widen();
    }
    m
}

/// Two paths at one pixel (the four-path mode's horizontal and vertical), as [`fused4`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn fused2<T: Cell>(
    c: &[u8],
    al: &[T],
    bl: &[T],
    mins: [T; 2],
    p2s: [T; 2],
    oa: &mut [T],
    ob: &mut [T],
    s: &mut [u16],
    p1: T,
) -> [T; 2] {
    let dn = c.len();
    let (s, oa, ob) = (&mut s[..dn], &mut oa[1..dn + 1], &mut ob[1..dn + 1]);
    let (al, bl) = (&al[..dn + 2], &bl[..dn + 2]);
    let lim: [T; 2] = std::array::from_fn(|k| mins[k].sat_add(p2s[k]));
    let mut m = [T::FAR; 2];
    for d in 0..dn {
        let cd = T::from_u16(c[d] as u16);
        let va = lr(cd, al[d], al[d + 1], al[d + 2], p1, lim[0], mins[0]);
        let vb = lr(cd, bl[d], bl[d + 1], bl[d + 2], p1, lim[1], mins[1]);
        oa[d] = va;
        ob[d] = vb;
        m[0] = m[0].min(va);
        m[1] = m[1].min(vb);
        s[d] = va.widen() + vb.widen();
    }
    m
}

/// The fused kernels, compiled once per instruction set. Each is a real (not
/// inlined) function, so its slice arguments are known not to alias and the loop
/// over disparities vectorises without run-time overlap checks.
pub(crate) trait Kernel: Sync {
    #[allow(clippy::too_many_arguments)]
    fn four<T: Cell>(
        &self,
        c: &[u8],
        a: Prev<T>,
        b: Prev<T>,
        e: Prev<T>,
        f: Prev<T>,
        oa: &mut [T],
        ob: &mut [T],
        oe: &mut [T],
        of: &mut [T],
        s: &mut [u16],
        p1: T,
    ) -> [T; 4];
    #[allow(clippy::too_many_arguments)]
    fn two<T: Cell>(
        &self,
        c: &[u8],
        a: Prev<T>,
        b: Prev<T>,
        oa: &mut [T],
        ob: &mut [T],
        s: &mut [u16],
        p1: T,
    ) -> [T; 2];

    /// One row of a pass; by default pixel by pixel through [`Kernel::four`] or
    /// [`Kernel::two`].
    fn row<T: Cell>(&self, job: RowJob<T>, each: &mut impl FnMut(usize, &mut [u16]))
    where
        Self: Sized,
    {
        row_per_pixel(self, job, each)
    }
}

/// Everything one pass needs to aggregate one image row: the row's costs and
/// per-pixel P2s, the previous row's vertical and diagonal path costs and minima
/// (`prev`, in the order vertical, diagonal from behind, diagonal from ahead), where
/// this row's go (`cur`), the horizontal path's two pixel buffers, and room for
/// one pixel's path sums (`s`, `dn`).
pub(crate) struct RowJob<'a, T> {
    pub costs: &'a [u8],
    pub s: &'a mut [u16],
    pub w: usize,
    pub dn: usize,
    pub backward: bool,
    pub first_row: bool,
    pub diagonals: bool,
    pub p1: T,
    pub p2: [&'a [T]; 4],
    pub prev: [&'a [T]; 3],
    pub prev_min: [&'a [T]; 3],
    pub cur: [&'a mut [T]; 3],
    pub cur_min: [&'a mut [T]; 3],
    pub hbuf: &'a mut [T],
    pub zero: &'a [T],
}

impl<'a, T: Cell> RowJob<'a, T> {
    /// The predecessor of pixel `x` (visited `xi`-th) along path `k` (0 horizontal,
    /// 1 vertical, 2 and 3 diagonals), given the horizontal path's previous buffer
    /// and minimum; the all-zero start where the path enters the image.
    #[inline(always)]
    pub fn predecessor<'b>(&'b self, k: usize, x: usize, xi: usize, h: (&'b [T], T)) -> Prev<'b, T>
    where
        'a: 'b,
    {
        let stride = self.dn + 2;
        let start = Prev {
            l: self.zero,
            min: T::ZERO,
            p2: T::ZERO,
        };
        if k == 0 {
            return if xi == 0 {
                start
            } else {
                Prev {
                    l: h.0,
                    min: h.1,
                    p2: self.p2[0][x],
                }
            };
        }
        let back = if self.backward { 1isize } else { -1 };
        let src = x as isize + [0, back, -back][k - 1];
        if self.first_row || !(0..self.w as isize).contains(&src) {
            return start;
        }
        let src = src as usize;
        Prev {
            l: &self.prev[k - 1][src * stride..(src + 1) * stride],
            min: self.prev_min[k - 1][src],
            p2: self.p2[k][x],
        }
    }
}

/// Walk a row's pixels in the pass's order: each pixel's costs, its paths'
/// predecessors and output buffers (horizontal first; four paths with the
/// diagonals, else two) and room for its path sums go to `four` or `two`, which
/// return the paths' new minima; then `each` gets the pixel's column and sums while
/// they are still in L1.
#[inline(always)]
pub(crate) fn walk_row<T: Cell>(
    job: RowJob<T>,
    mut four: impl FnMut(&[u8], [Prev<T>; 4], [&mut [T]; 4], &mut [u16]) -> [T; 4],
    mut two: impl FnMut(&[u8], [Prev<T>; 2], [&mut [T]; 2], &mut [u16]) -> [T; 2],
    each: &mut impl FnMut(usize, &mut [u16]),
) {
    let (w, dn) = (job.w, job.dn);
    let stride = dn + 2;
    let mut job = job;
    let hbuf = std::mem::take(&mut job.hbuf);
    let s = std::mem::take(&mut job.s);
    let [cv, cd1, cd2] = std::mem::take(&mut job.cur);
    let [mcv, mcd1, mcd2] = std::mem::take(&mut job.cur_min);
    let mut hmin = T::ZERO;
    for xi in 0..w {
        let x = if job.backward { w - 1 - xi } else { xi };
        let c = &job.costs[x * dn..(x + 1) * dn];
        let sp = &mut s[..dn];
        let (ha, hb) = hbuf.split_at_mut(stride);
        let (hprev, hout) = if xi % 2 == 0 { (&*ha, hb) } else { (&*hb, ha) };
        let pred = |k| job.predecessor(k, x, xi, (hprev, hmin));
        let vout = &mut cv[x * stride..(x + 1) * stride];
        if job.diagonals {
            let d1out = &mut cd1[x * stride..(x + 1) * stride];
            let d2out = &mut cd2[x * stride..(x + 1) * stride];
            let preds = [pred(0), pred(1), pred(2), pred(3)];
            let m = four(c, preds, [hout, vout, d1out, d2out], sp);
            hmin = m[0];
            mcv[x] = m[1];
            mcd1[x] = m[2];
            mcd2[x] = m[3];
        } else {
            let m = two(c, [pred(0), pred(1)], [hout, vout], sp);
            hmin = m[0];
            mcv[x] = m[1];
        }
        each(x, sp);
    }
}

/// A row through the per-pixel kernels.
fn row_per_pixel<T: Cell, Kr: Kernel>(
    kr: &Kr,
    job: RowJob<T>,
    each: &mut impl FnMut(usize, &mut [u16]),
) {
    let p1 = job.p1;
    walk_row(
        job,
        |c, [a, b, e, f], [oa, ob, oe, of], s| kr.four(c, a, b, e, f, oa, ob, oe, of, s, p1),
        |c, [a, b], [oa, ob], s| kr.two(c, a, b, oa, ob, s, p1),
        each,
    )
}

/// Baseline instruction set.
pub(crate) struct Base;

/// The per-instruction-set entry points of the fused kernels: real (not inlined)
/// functions whose slice arguments the compiler knows do not alias.
macro_rules! kernel_entry_points {
    ($four:ident, $two:ident $(, $feature:literal)?) => {
        $(#[target_feature(enable = $feature)])?
        #[inline(never)]
        #[allow(clippy::too_many_arguments)]
        fn $four<T: Cell>(c: &[u8], al: &[T], bl: &[T], el: &[T], fl: &[T], mins: [T; 4], p2s: [T; 4], oa: &mut [T], ob: &mut [T], oe: &mut [T], of: &mut [T], s: &mut [u16], p1: T) -> [T; 4] {
            fused4(c, al, bl, el, fl, mins, p2s, oa, ob, oe, of, s, p1)
        }

        $(#[target_feature(enable = $feature)])?
        #[inline(never)]
        #[allow(clippy::too_many_arguments)]
        fn $two<T: Cell>(c: &[u8], al: &[T], bl: &[T], mins: [T; 2], p2s: [T; 2], oa: &mut [T], ob: &mut [T], s: &mut [u16], p1: T) -> [T; 2] {
            fused2(c, al, bl, mins, p2s, oa, ob, s, p1)
        }
    };
}

kernel_entry_points!(four_base, two_base);
#[cfg(target_arch = "x86_64")]
kernel_entry_points!(four_avx2, two_avx2, "avx2");

/// AVX2. A value exists only on CPUs that have AVX2: [`Avx2::detect`] is the only constructor.
#[cfg(target_arch = "x86_64")]
pub(crate) struct Avx2 {
    _private: (),
}

#[cfg(target_arch = "x86_64")]
impl Avx2 {
    pub(crate) fn detect() -> Option<Self> {
        std::arch::is_x86_feature_detected!("avx2").then_some(Avx2 { _private: () })
    }
}

/// `four` and `two` of a [`Kernel`] through that instruction set's entry points.
/// The entry points of an instruction set beyond the baseline are unsafe to call;
/// a value of the kernel type exists only where the CPU has it (see [`Avx2`]).
macro_rules! kernel_calls {
    ($four:ident, $two:ident) => {
        fn four<T: Cell>(
            &self,
            c: &[u8],
            a: Prev<T>,
            b: Prev<T>,
            e: Prev<T>,
            f: Prev<T>,
            oa: &mut [T],
            ob: &mut [T],
            oe: &mut [T],
            of: &mut [T],
            s: &mut [u16],
            p1: T,
        ) -> [T; 4] {
            let (mins, p2s) = ([a.min, b.min, e.min, f.min], [a.p2, b.p2, e.p2, f.p2]);
            // SAFETY: the entry point's only requirement is its instruction set, which
            // this kernel value stands for (detected before it was made, or baseline).
            #[allow(unused_unsafe)]
            unsafe {
                $four(c, a.l, b.l, e.l, f.l, mins, p2s, oa, ob, oe, of, s, p1)
            }
        }

        fn two<T: Cell>(
            &self,
            c: &[u8],
            a: Prev<T>,
            b: Prev<T>,
            oa: &mut [T],
            ob: &mut [T],
            s: &mut [u16],
            p1: T,
        ) -> [T; 2] {
            // SAFETY: as for `four`.
            #[allow(unused_unsafe)]
            unsafe {
                $two(c, a.l, b.l, [a.min, b.min], [a.p2, b.p2], oa, ob, s, p1)
            }
        }
    };
}

impl Kernel for Base {
    kernel_calls!(four_base, two_base);
}

#[cfg(target_arch = "x86_64")]
impl Kernel for Avx2 {
    fn row<T: Cell>(&self, job: RowJob<T>, each: &mut impl FnMut(usize, &mut [u16])) {
        if !job.dn.is_multiple_of(32) {
            return row_per_pixel(self, job, each);
        }
        if let Some(job) = T::avx2_row(job, self, each) {
            row_per_pixel(self, job, each)
        }
    }

    kernel_calls!(four_avx2, two_avx2);
}

/// NEON (aarch64, where it is part of the baseline): the whole-row byte kernel
/// of [`crate::neon`]; word cells and ranges that are not a multiple of 16 run
/// the generic per-pixel kernels, which the compiler vectorises with NEON.
#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
pub(crate) struct Neon;

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
impl Kernel for Neon {
    fn row<T: Cell>(&self, job: RowJob<T>, each: &mut impl FnMut(usize, &mut [u16])) {
        if !job.dn.is_multiple_of(16) {
            return row_per_pixel(self, job, each);
        }
        if let Some(job) = T::neon_row(job, each) {
            row_per_pixel(self, job, each)
        }
    }

    kernel_calls!(four_base, two_base);
}

/// P2 for every intensity step 0..=255 between neighbours along a path: lowered across edges.
pub(crate) fn p2_table(p1: u16, p2: u16, edge: u16) -> [u16; 256] {
    std::array::from_fn(|g| {
        if edge == 0 {
            p2
        } else {
            let e = edge as u32;
            ((p2 as u32 * e / (e + g as u32)) as u16).max(p1 + 1)
        }
    })
}
