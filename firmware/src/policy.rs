//! A learned policy's forward pass for the MCU: a fully connected network
//! with ReLU hidden layers and a `tanh` output, in `f32`, with no allocation
//! (two stack buffers of [`MAX_WIDTH`]).
//!
//! The weights come from the trainer's plain weight table (`agent
//! learn-to-fly` writes it): layer
//! after layer, each layer's weights input-major (`w[input][output]`), then
//! its bias. The sums run in the trainer's order (bias first, then inputs in
//! order), so both compute the same numbers to rounding.

/// Widest layer the forward pass holds.
pub const MAX_WIDTH: usize = 128;
/// Most layers (including input and output).
pub const MAX_LAYERS: usize = 6;

/// Why a weight table cannot be flown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyError {
    /// Fewer than two or more than [`MAX_LAYERS`] layer sizes.
    Layers,
    /// A layer wider than [`MAX_WIDTH`] or empty.
    Width,
    /// The parameter count does not match the sizes.
    Params,
    /// An input or output slice of the wrong length.
    Shape,
    /// The vehicle cannot hover (thrust below its weight).
    Vehicle,
}

/// First line of a weight table (what `agent learn-to-fly` writes).
pub const TABLE_HEADER: &str = "# learn-to-fly policy weight table v1";

/// Why a weight table's text cannot be read; lines count from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableError {
    /// The first line is not [`TABLE_HEADER`].
    Header,
    /// A `sizes` line that is not a list of widths, a second one, or
    /// parameters before it (at this line); line 0: no `sizes` line.
    Sizes(usize),
    /// Not a finite number.
    Number(usize),
    /// More layers or parameters than the buffers hold.
    TooMany(usize),
    /// The sizes and the parameter count cannot be flown.
    Shape(PolicyError),
}

/// Read a weight table's text — the header, comment lines (`#`), one
/// `sizes` line, then one parameter per line in this module's order — into
/// `sizes` and `params`; returns how many of each it filled. Checked as
/// [`Policy::new`] checks.
pub fn parse_table(
    text: &str,
    sizes: &mut [usize; MAX_LAYERS],
    params: &mut [f32],
) -> Result<(usize, usize), TableError> {
    if text.lines().next().map(str::trim) != Some(TABLE_HEADER) {
        return Err(TableError::Header);
    }
    let (mut layers, mut n) = (None::<usize>, 0usize);
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("sizes") {
            if layers.is_some() {
                return Err(TableError::Sizes(i + 1));
            }
            let mut k = 0;
            for w in rest.split_whitespace() {
                let slot = sizes.get_mut(k).ok_or(TableError::TooMany(i + 1))?;
                *slot = w.parse().map_err(|_| TableError::Sizes(i + 1))?;
                k += 1;
            }
            layers = Some(k);
            continue;
        }
        if layers.is_none() {
            return Err(TableError::Sizes(i + 1));
        }
        let v: f32 = line.parse().map_err(|_| TableError::Number(i + 1))?;
        if !v.is_finite() {
            return Err(TableError::Number(i + 1));
        }
        *params.get_mut(n).ok_or(TableError::TooMany(i + 1))? = v;
        n += 1;
    }
    let layers = layers.ok_or(TableError::Sizes(0))?;
    Policy::new(&sizes[..layers], &params[..n]).map_err(TableError::Shape)?;
    Ok((layers, n))
}

/// A network borrowed from a weight table.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    sizes: &'a [usize],
    params: &'a [f32],
}

/// Parameters of a network with these layer sizes.
pub const fn param_count(sizes: &[usize]) -> usize {
    let mut n = 0;
    let mut l = 0;
    while l + 1 < sizes.len() {
        n += sizes[l] * sizes[l + 1] + sizes[l + 1];
        l += 1;
    }
    n
}

impl<'a> Policy<'a> {
    /// Check the table's shape.
    pub fn new(sizes: &'a [usize], params: &'a [f32]) -> Result<Self, PolicyError> {
        if sizes.len() < 2 || sizes.len() > MAX_LAYERS {
            return Err(PolicyError::Layers);
        }
        if sizes.iter().any(|&s| s == 0 || s > MAX_WIDTH) {
            return Err(PolicyError::Width);
        }
        if params.len() != param_count(sizes) {
            return Err(PolicyError::Params);
        }
        Ok(Self { sizes, params })
    }

    /// Input width.
    pub fn inputs(&self) -> usize {
        self.sizes[0]
    }

    /// Output width.
    pub fn outputs(&self) -> usize {
        self.sizes[self.sizes.len() - 1]
    }

    /// `out = π(obs)`.
    pub fn forward(&self, obs: &[f32], out: &mut [f32]) -> Result<(), PolicyError> {
        if obs.len() != self.inputs() || out.len() != self.outputs() {
            return Err(PolicyError::Shape);
        }
        let mut a = [0.0f32; MAX_WIDTH];
        let mut b = [0.0f32; MAX_WIDTH];
        a[..obs.len()].copy_from_slice(obs);
        let n = self.sizes.len() - 1;
        let mut off = 0;
        for l in 0..n {
            let (i, o) = (self.sizes[l], self.sizes[l + 1]);
            let w = &self.params[off..off + i * o];
            let bias = &self.params[off + i * o..off + i * o + o];
            off += i * o + o;
            b[..o].copy_from_slice(bias);
            for (k, &x) in a[..i].iter().enumerate() {
                for (y, wv) in b[..o].iter_mut().zip(&w[k * o..k * o + o]) {
                    *y += x * wv;
                }
            }
            if l + 1 < n {
                for v in &mut b[..o] {
                    *v = v.max(0.0);
                }
            } else {
                for v in &mut b[..o] {
                    *v = tanh(*v);
                }
            }
            core::mem::swap(&mut a, &mut b);
        }
        out.copy_from_slice(&a[..self.outputs()]);
        Ok(())
    }
}

/// `e^x` in `f32` without the standard library: x = k·ln 2 + r, |r| ≤ ln2/2,
/// e^r by its Taylor series to r⁷ (relative error below 2e-7), times 2^k
/// built in the exponent bits.
pub fn exp(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    if x > 88.0 {
        return f32::INFINITY;
    }
    if x < -87.0 {
        return 0.0;
    }
    const LN2: f32 = core::f32::consts::LN_2;
    let kf = x / LN2;
    let k = if kf >= 0.0 {
        (kf + 0.5) as i32
    } else {
        (kf - 0.5) as i32
    };
    // ln 2 in two parts (Cody & Waite): k·LN2_HI is exact, so r keeps its
    // bits for large k.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let r = (x - k as f32 * LN2_HI) - k as f32 * LN2_LO;
    let mut p = 1.0 / 5040.0;
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    p * f32::from_bits(((k + 127) as u32) << 23)
}

/// `tanh` in `f32` without the standard library (absolute error below 1e-6).
pub fn tanh(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let ax = if x < 0.0 { -x } else { x };
    let t = if ax > 9.0 {
        1.0
    } else if ax < 0.0004 {
        // tanh x = x − x³/3 + ...: exact to rounding this close to 0.
        ax
    } else {
        let e = exp(-2.0 * ax);
        (1.0 - e) / (1.0 + e)
    };
    if x < 0.0 { -t } else { t }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_tanh_match_the_standard_library() {
        let mut x = -20.0f32;
        while x < 20.0 {
            let e = exp(x);
            assert!(
                ((e - x.exp()) / x.exp()).abs() < 3e-7,
                "exp({x}) = {e}, std {}",
                x.exp()
            );
            assert!((tanh(x) - x.tanh()).abs() < 1e-6, "tanh({x})");
            x += 0.0137;
        }
        assert_eq!(tanh(100.0), 1.0);
        assert_eq!(tanh(-100.0), -1.0);
        assert!(tanh(f32::NAN).is_nan());
        assert_eq!(exp(-200.0), 0.0);
    }

    #[test]
    fn tables_are_read_and_bad_ones_named() {
        let mut sizes = [0usize; MAX_LAYERS];
        let mut params = [0.0f32; 16];
        let good = "# learn-to-fly policy weight table v1\n# a comment\nsizes 2 2\n1\n2\n3\n4\n0.5\n-5e-1\n";
        assert_eq!(parse_table(good, &mut sizes, &mut params), Ok((2, 6)));
        assert_eq!((&sizes[..2], params[5]), (&[2usize, 2][..], -0.5));
        let cases: [(&str, TableError); 6] = [
            ("sizes 2 2\n1\n", TableError::Header),
            (
                "# learn-to-fly policy weight table v1\n1\nsizes 2 2\n",
                TableError::Sizes(2),
            ),
            (
                "# learn-to-fly policy weight table v1\nsizes 2 x\n",
                TableError::Sizes(2),
            ),
            (
                "# learn-to-fly policy weight table v1\nsizes 1 1\nnan\n0\n",
                TableError::Number(3),
            ),
            (
                "# learn-to-fly policy weight table v1\nsizes 1 1\n1\n",
                TableError::Shape(PolicyError::Params),
            ),
            (
                "# learn-to-fly policy weight table v1\n",
                TableError::Sizes(0),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse_table(text, &mut sizes, &mut params),
                Err(want),
                "{text}"
            );
        }
        let long = "# learn-to-fly policy weight table v1\nsizes 1 1 1 1 1 1 1\n";
        assert_eq!(
            parse_table(long, &mut sizes, &mut params),
            Err(TableError::TooMany(2))
        );
        let mut small = [0.0f32; 1];
        assert_eq!(
            parse_table(good, &mut sizes, &mut small),
            Err(TableError::TooMany(5))
        );
    }

    #[test]
    fn shapes_are_checked() {
        let p = [0.0f32; 3 * 2 + 2];
        assert!(Policy::new(&[3, 2], &p).is_ok());
        assert_eq!(Policy::new(&[3], &p).err(), Some(PolicyError::Layers));
        assert_eq!(
            Policy::new(&[3, MAX_WIDTH + 1], &p).err(),
            Some(PolicyError::Width)
        );
        assert_eq!(Policy::new(&[3, 3], &p).err(), Some(PolicyError::Params));
        let pol = Policy::new(&[3, 2], &p).unwrap();
        let mut out = [0.0; 3];
        assert_eq!(pol.forward(&[0.0; 3], &mut out), Err(PolicyError::Shape));
    }

    #[test]
    fn a_hand_computed_network() {
        // 2 -> 2 (ReLU) -> 1 (tanh).
        let sizes = [2, 2, 1];
        // w1 = [[1, -1], [2, 1]] (input-major), b1 = [0, 0.5]; w2 = [[1], [-2]], b2 = [0.1]
        let p = [1.0, -1.0, 2.0, 1.0, 0.0, 0.5, 1.0, -2.0, 0.1];
        let pol = Policy::new(&sizes, &p).unwrap();
        let mut out = [0.0];
        pol.forward(&[0.5, 0.25], &mut out).unwrap();
        // h = relu([0.5 + 0.5, -0.5 + 0.25 + 0.5]) = [1, 0.25]; y = tanh(0.1 + 1 - 0.5)
        assert!((out[0] - 0.6f32.tanh()).abs() < 1e-6, "{}", out[0]);
    }
}
