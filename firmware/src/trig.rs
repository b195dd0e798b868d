//! Sine, cosine and arctangent for the MCU build, which has no `libm`:
//! polynomials good to a few 1e-7 (sin, cos) and 1e-5 rad (atan2) in `f32`,
//! enough for headings and reported attitude.

use core::f32::consts::{FRAC_PI_2, PI};

/// `x` wrapped into [−π, π] (finite `x`; NaN stays NaN).
fn wrap(x: f32) -> f32 {
    if x.abs() <= PI {
        return x;
    }
    let turns = x / (2.0 * PI);
    // Round to the nearest whole turn without `round` (not in core for f32).
    let k = (turns + if turns >= 0.0 { 0.5 } else { -0.5 }) as i64 as f32;
    x - k * 2.0 * PI
}

/// sin(x) for |x| ≤ π/2: the Taylor series to x¹³ (error below 1e-7).
fn sin_core(x: f32) -> f32 {
    let x2 = x * x;
    // Horner from the x¹³ term down: x (1 − x²/3! (1 − x²/(4·5) (1 − ...))).
    let mut p = 1.0;
    for n in [13.0f32, 11.0, 9.0, 7.0, 5.0, 3.0] {
        p = 1.0 - x2 / (n * (n - 1.0)) * p;
    }
    x * p
}

/// sin(x) (NaN for a non-finite x).
pub fn sin(x: f32) -> f32 {
    if !x.is_finite() {
        return f32::NAN;
    }
    let x = wrap(x);
    // sin(π − x) = sin(x) folds [π/2, π] onto [0, π/2].
    if x > FRAC_PI_2 {
        sin_core(PI - x)
    } else if x < -FRAC_PI_2 {
        sin_core(-PI - x)
    } else {
        sin_core(x)
    }
}

/// cos(x) (NaN for a non-finite x).
pub fn cos(x: f32) -> f32 {
    sin(x + FRAC_PI_2)
}

/// atan(x) for |x| ≤ 1 (a minimax-style odd polynomial, error below 1e-5).
fn atan_unit(x: f32) -> f32 {
    let x2 = x * x;
    x * (0.999_866 + x2 * (-0.330_299_5 + x2 * (0.180_141 + x2 * (-0.085_133 + x2 * 0.020_835_1))))
}

/// atan2(y, x) in [−π, π] (0 for the origin, NaN for a NaN input).
pub fn atan2(y: f32, x: f32) -> f32 {
    if y.is_nan() || x.is_nan() {
        return f32::NAN;
    }
    if x == 0.0 && y == 0.0 {
        return 0.0;
    }
    if x.abs() >= y.abs() {
        let a = atan_unit(y / x);
        if x > 0.0 {
            a
        } else if y >= 0.0 {
            a + PI
        } else {
            a - PI
        }
    } else {
        let a = atan_unit(x / y);
        if y > 0.0 {
            FRAC_PI_2 - a
        } else {
            -FRAC_PI_2 - a
        }
    }
}

/// asin(x) for x in [−1, 1] (clamped).
pub fn asin(x: f32) -> f32 {
    let x = if x.is_nan() { x } else { x.clamp(-1.0, 1.0) };
    atan2(x, crate::quad::sqrt(1.0 - x * x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agree_with_std() {
        for k in -4000..=4000 {
            let x = k as f32 * 0.005;
            assert!(
                (sin(x) - x.sin()).abs() < 1e-6,
                "sin {x}: {} {}",
                sin(x),
                x.sin()
            );
            assert!((cos(x) - x.cos()).abs() < 1e-6, "cos {x}");
            let (y, z) = (x.sin() * 3.0, (0.7 * x).cos() - 0.2);
            assert!(
                (atan2(y, z) - y.atan2(z)).abs() < 2e-5,
                "atan2 {y} {z}: {} {}",
                atan2(y, z),
                y.atan2(z)
            );
        }
        for k in -100..=100 {
            let x = k as f32 * 0.01;
            assert!((asin(x) - x.asin()).abs() < 2e-5, "asin {x}");
        }
        assert!(sin(f32::INFINITY).is_nan() && atan2(f32::NAN, 1.0).is_nan());
        assert_eq!(atan2(0.0, 0.0), 0.0);
    }
}
