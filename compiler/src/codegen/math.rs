//! Vector math for kernels: logarithm, sine and cosine, arctangent and the error function, for
//! f32 scalars and f32x4 vectors, as straight-line code (no branches, no calls) so that they
//! vectorise and fuse into epilogues like [`Kernel::exp`].
//!
//! The polynomials are the Cephes single-precision ones (log, sin, cos, atan: relative error
//! around 1e-7 on their reduced ranges) and, for erf, the rational approximation Eigen and XLA
//! use (absolute error below 1e-7 after clamping to ±4). IEEE special values are handled with
//! selects: log(0) = -inf, log(x < 0) = NaN, log(inf) = inf, NaN propagates everywhere.

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{types, Endianness, InstBuilder, MemFlagsData, Type, Value};

use super::kernel::Kernel;

/// Lane-preserving bit casts between f32 and i32 (scalar or 4 lanes).
fn bit_flags(ty: Type) -> MemFlagsData {
    if ty.is_vector() {
        MemFlagsData::new().with_endianness(Endianness::Little)
    } else {
        MemFlagsData::new()
    }
}

fn int_type(ty: Type) -> Type {
    if ty.is_vector() {
        types::I32X4
    } else {
        types::I32
    }
}

impl Kernel<'_> {
    /// `c[0]·x^(n−1) + … + c[n−1]` by Horner's rule.
    pub fn polynomial(&mut self, x: Value, coefficients: &[f32]) -> Value {
        let ty = self.builder.func.dfg.value_type(x);
        let mut p = self.float_constant(ty, coefficients[0]);
        for &c in &coefficients[1..] {
            let c = self.float_constant(ty, c);
            p = self.multiply_add(p, x, c);
        }
        p
    }

    /// `|magnitude|` with the sign of `sign` (Cranelift's `fcopysign` has no x86 vector lowering).
    pub fn copysign(&mut self, magnitude: Value, sign: Value) -> Value {
        let ty = self.builder.func.dfg.value_type(magnitude);
        let int_ty = int_type(ty);
        let flags = bit_flags(ty);
        let magnitude_bits = self.builder.ins().bitcast(int_ty, flags, magnitude);
        let sign_bits = self.builder.ins().bitcast(int_ty, flags, sign);
        let magnitude_mask = self.int_constant(int_ty, 0x7FFF_FFFF);
        let sign_mask = self.int_constant(int_ty, 0x8000_0000u32 as i32 as i64);
        let magnitude_bits = self.builder.ins().band(magnitude_bits, magnitude_mask);
        let sign_bits = self.builder.ins().band(sign_bits, sign_mask);
        let bits = self.builder.ins().bor(magnitude_bits, sign_bits);
        self.builder.ins().bitcast(ty, flags, bits)
    }

    /// `x · c`.
    fn scale(&mut self, x: Value, c: f32) -> Value {
        let ty = self.builder.func.dfg.value_type(x);
        let c = self.float_constant(ty, c);
        self.builder.ins().fmul(x, c)
    }

    /// Natural logarithm (Cephes logf). Subnormal inputs are scaled by 2^23 first, so they get
    /// their exact logarithm rather than that of the smallest normal.
    pub fn log(&mut self, x: Value) -> Value {
        let ty = self.builder.func.dfg.value_type(x);
        let int_ty = int_type(ty);
        let flags = bit_flags(ty);
        let smallest_normal = self.float_constant(ty, f32::MIN_POSITIVE);
        let scaled_up = self.scale(x, 8_388_608.0); // 2^23
        let subnormal_exponent = self.float_constant(ty, -23.0);
        let zero = self.float_constant(ty, 0.0);
        let normal = self.select_float(FloatCC::LessThan, x, smallest_normal, scaled_up, x);
        let exponent_bias = self.select_float(
            FloatCC::LessThan,
            x,
            smallest_normal,
            subnormal_exponent,
            zero,
        );
        // x = m · 2^e with m in [0.5, 1).
        let bits = self.builder.ins().bitcast(int_ty, flags, normal);
        let shifted = self.builder.ins().ushr_imm_u(bits, 23);
        let biased = self.int_constant(int_ty, 0xFF);
        let exponent_bits = self.builder.ins().band(shifted, biased);
        let offset = self.int_constant(int_ty, 126);
        let exponent = self.builder.ins().isub(exponent_bits, offset);
        let mut e = self.builder.ins().fcvt_from_sint(ty, exponent);
        e = self.builder.ins().fadd(e, exponent_bias);
        let mantissa_mask = self.int_constant(int_ty, 0x807F_FFFF);
        let half_exponent = self.int_constant(int_ty, 0x3F00_0000);
        let mantissa_bits = self.builder.ins().band(bits, mantissa_mask);
        let mantissa_bits = self.builder.ins().bor(mantissa_bits, half_exponent);
        let m = self.builder.ins().bitcast(ty, flags, mantissa_bits);
        // Below √½ use 2m − 1 and e − 1, so the argument stays in [√½ − 1, √2 − 1].
        let one = self.float_constant(ty, 1.0);
        let sqrt_half = self.float_constant(ty, std::f32::consts::FRAC_1_SQRT_2);
        let m_minus_one = self.builder.ins().fsub(m, one);
        let doubled = self.builder.ins().fadd(m_minus_one, m);
        let e_minus_one = self.builder.ins().fsub(e, one);
        let t = self.select_float(FloatCC::LessThan, m, sqrt_half, doubled, m_minus_one);
        let e = self.select_float(FloatCC::LessThan, m, sqrt_half, e_minus_one, e);
        let z = self.builder.ins().fmul(t, t);
        let p = self.polynomial(
            t,
            &[
                7.037_683_6e-2,
                -1.151_461_1e-1,
                1.167_699_9e-1,
                -1.242_014_1e-1,
                1.424_932_3e-1,
                -1.666_805_8e-1,
                2.000_071_5e-1,
                -2.499_999_4e-1,
                3.333_333e-1,
            ],
        );
        let tz = self.builder.ins().fmul(t, z);
        let mut y = self.builder.ins().fmul(p, tz);
        let low = self.float_constant(ty, -2.121_944_4e-4);
        y = self.multiply_add(e, low, y);
        let minus_half = self.float_constant(ty, -0.5);
        y = self.multiply_add(z, minus_half, y);
        let mut result = self.builder.ins().fadd(t, y);
        let high = self.float_constant(ty, 0.693_359_4);
        result = self.multiply_add(e, high, result);
        // Special values, NaN last so it wins.
        let nan = self.float_constant(ty, f32::NAN);
        let infinity = self.float_constant(ty, f32::INFINITY);
        let minus_infinity = self.float_constant(ty, f32::NEG_INFINITY);
        result = self.select_float(FloatCC::LessThan, x, zero, nan, result);
        result = self.select_float(FloatCC::Equal, x, zero, minus_infinity, result);
        result = self.select_float(FloatCC::Equal, x, infinity, infinity, result);
        self.select_float(FloatCC::Unordered, x, x, x, result)
    }

    /// `log(1 + x)`, accurate for small `x`: with `u = 1 + x` rounded,
    /// `log(u) − ((u − 1) − x) / u` corrects the rounding of `u` to first order.
    pub fn log1p(&mut self, x: Value) -> Value {
        let ty = self.builder.func.dfg.value_type(x);
        let one = self.float_constant(ty, 1.0);
        let u = self.builder.ins().fadd(one, x);
        let log_u = self.log(u);
        let u_minus_one = self.builder.ins().fsub(u, one);
        let error = self.builder.ins().fsub(u_minus_one, x);
        let correction = self.builder.ins().fdiv(error, u);
        let corrected = self.builder.ins().fsub(log_u, correction);
        let result = self.select_float(FloatCC::Equal, u, one, x, corrected);
        // u = 0 (x = −1): the correction is 0/0; the logarithm alone is right (−inf).
        let zero = self.float_constant(ty, 0.0);
        let result = self.select_float(FloatCC::Equal, u, zero, log_u, result);
        let infinity = self.float_constant(ty, f32::INFINITY);
        self.select_float(FloatCC::Equal, x, infinity, infinity, result)
    }

    /// `e^x − 1`, accurate for small `x`: `(u − 1) · x / log(u)` with `u = e^x` (Kahan's trick).
    pub fn expm1(&mut self, x: Value) -> Value {
        let ty = self.builder.func.dfg.value_type(x);
        let one = self.float_constant(ty, 1.0);
        let u = self.exp(x);
        let u_minus_one = self.builder.ins().fsub(u, one);
        let log_u = self.log(u);
        // (u − 1) · (x / log u): this order cannot overflow below e^x's own overflow.
        let ratio = self.builder.ins().fdiv(x, log_u);
        let corrected = self.builder.ins().fmul(u_minus_one, ratio);
        let minus_one = self.float_constant(ty, -1.0);
        let infinity = self.float_constant(ty, f32::INFINITY);
        let result = self.select_float(FloatCC::Equal, u, one, x, corrected);
        let result = self.select_float(FloatCC::Equal, u_minus_one, minus_one, minus_one, result);
        self.select_float(FloatCC::Equal, u, infinity, infinity, result)
    }

    /// Sine or cosine (Cephes sinf/cosf): reduction by π/4 in three parts, then the sine or
    /// cosine polynomial by octant. Accurate to a few ulps for |x| up to about 8192; beyond, the
    /// reduction loses bits (as Cephes does).
    pub fn sin_or_cos(&mut self, x: Value, cosine: bool) -> Value {
        let ty = self.builder.func.dfg.value_type(x);
        let int_ty = int_type(ty);
        let flags = bit_flags(ty);
        let ax = self.builder.ins().fabs(x);
        let scaled = self.scale(ax, std::f32::consts::FRAC_1_PI * 4.0);
        let mut octant = self.builder.ins().floor(scaled);
        // Make the octant even: j += j & 1.
        let half = self.scale(octant, 0.5);
        let half_floor = self.builder.ins().floor(half);
        let twice = self.scale(half_floor, 2.0);
        let odd = self.builder.ins().fsub(octant, twice);
        octant = self.builder.ins().fadd(octant, odd);
        // j mod 8, in {0, 2, 4, 6}.
        let eighth = self.scale(octant, 0.125);
        let eighth_floor = self.builder.ins().floor(eighth);
        let whole = self.scale(eighth_floor, 8.0);
        let j = self.builder.ins().fsub(octant, whole);
        let minus_dp1 = self.float_constant(ty, -0.785_156_25);
        let minus_dp2 = self.float_constant(ty, -2.418_756_5e-4);
        let minus_dp3 = self.float_constant(ty, -3.774_895e-8);
        let mut r = self.multiply_add(octant, minus_dp1, ax);
        r = self.multiply_add(octant, minus_dp2, r);
        r = self.multiply_add(octant, minus_dp3, r);
        let z = self.builder.ins().fmul(r, r);
        let sine_poly = self.polynomial(z, &[-1.951_529_6e-4, 8.332_161e-3, -1.666_665_5e-1]);
        let zr = self.builder.ins().fmul(z, r);
        let sine = self.multiply_add(sine_poly, zr, r);
        let cosine_poly = self.polynomial(z, &[2.443_315_7e-5, -1.388_731_6e-3, 4.166_664_6e-2]);
        let zz = self.builder.ins().fmul(z, z);
        let one = self.float_constant(ty, 1.0);
        let minus_half = self.float_constant(ty, -0.5);
        let cosine_base = self.multiply_add(z, minus_half, one);
        let cosine_value = self.multiply_add(cosine_poly, zz, cosine_base);
        // Octants 2 and 6 (j mod 4 == 2) swap the polynomials.
        let four = self.float_constant(ty, 4.0);
        let two = self.float_constant(ty, 2.0);
        let j_minus_four = self.builder.ins().fsub(j, four);
        let j4 = self.select_float(FloatCC::GreaterThanOrEqual, j, four, j_minus_four, j);
        let (near, far) = if cosine {
            (cosine_value, sine)
        } else {
            (sine, cosine_value)
        };
        let value = self.select_float(FloatCC::Equal, j4, two, far, near);
        let zero = self.float_constant(ty, 0.0);
        let minus_zero = self.float_constant(ty, -0.0);
        // Both flip in octants 4..7; besides, cosine flips for j mod 4 = 2 and sine takes x's sign.
        let flip_high = self.select_float(FloatCC::GreaterThanOrEqual, j, four, minus_zero, zero);
        let other = if cosine {
            self.select_float(FloatCC::Equal, j4, two, minus_zero, zero)
        } else {
            self.copysign(zero, x)
        };
        let a = self.builder.ins().bitcast(int_ty, flags, flip_high);
        let b = self.builder.ins().bitcast(int_ty, flags, other);
        let bits = self.builder.ins().bxor(a, b);
        let sign = self.builder.ins().bitcast(ty, flags, bits);
        let value_bits = self.builder.ins().bitcast(int_ty, flags, value);
        let sign_bits = self.builder.ins().bitcast(int_ty, flags, sign);
        let signed = self.builder.ins().bxor(value_bits, sign_bits);
        let result = self.builder.ins().bitcast(ty, flags, signed);
        // sin(±inf) and cos(±inf) are NaN; NaN stays NaN through the arithmetic above.
        let infinity = self.float_constant(ty, f32::INFINITY);
        let nan = self.float_constant(ty, f32::NAN);
        self.select_float(FloatCC::Equal, ax, infinity, nan, result)
    }

    /// Arctangent (Cephes atanf): reduction to |t| ≤ tan(π/8), an odd polynomial, the sign of x.
    pub fn atan(&mut self, x: Value) -> Value {
        let ty = self.builder.func.dfg.value_type(x);
        let ax = self.builder.ins().fabs(x);
        let one = self.float_constant(ty, 1.0);
        let zero = self.float_constant(ty, 0.0);
        let tan_3pi_8 = self.float_constant(ty, 2.414_213_5);
        let tan_pi_8 = self.float_constant(ty, 0.414_213_57);
        let minus_inverse = {
            let minus_one = self.float_constant(ty, -1.0);
            self.builder.ins().fdiv(minus_one, ax)
        };
        let shifted = {
            let numerator = self.builder.ins().fsub(ax, one);
            let denominator = self.builder.ins().fadd(ax, one);
            self.builder.ins().fdiv(numerator, denominator)
        };
        let quarter_pi = self.float_constant(ty, std::f32::consts::FRAC_PI_4);
        let half_pi = self.float_constant(ty, std::f32::consts::FRAC_PI_2);
        let t = self.select_float(FloatCC::GreaterThan, ax, tan_pi_8, shifted, ax);
        let base = self.select_float(FloatCC::GreaterThan, ax, tan_pi_8, quarter_pi, zero);
        let t = self.select_float(FloatCC::GreaterThan, ax, tan_3pi_8, minus_inverse, t);
        let base = self.select_float(FloatCC::GreaterThan, ax, tan_3pi_8, half_pi, base);
        let z = self.builder.ins().fmul(t, t);
        let p = self.polynomial(
            z,
            &[
                8.053_744_5e-2,
                -1.387_768_6e-1,
                1.997_771_1e-1,
                -3.333_295e-1,
            ],
        );
        let zt = self.builder.ins().fmul(z, t);
        let value = self.multiply_add(p, zt, t);
        let value = self.builder.ins().fadd(value, base);
        self.copysign(value, x)
    }

    /// `atan2(y, x)` with IEEE special cases: signed zeros select 0 or ±π, infinities ±π/4 or
    /// ±3π/4, NaN propagates.
    pub fn atan2(&mut self, y: Value, x: Value) -> Value {
        let ty = self.builder.func.dfg.value_type(x);
        let zero = self.float_constant(ty, 0.0);
        let pi = self.float_constant(ty, std::f32::consts::PI);
        let quotient = self.builder.ins().fdiv(y, x);
        let angle = self.atan(quotient);
        // Left half-plane (x < 0 or x = −0): add ±π with the sign of y.
        let signed_pi = self.copysign(pi, y);
        let shifted = self.builder.ins().fadd(angle, signed_pi);
        let sign_of_x = self.copysign(pi, x);
        let mut result = self.select_float(FloatCC::LessThan, sign_of_x, zero, shifted, angle);
        // Both zero: ±0 or ±π, by the sign of x.
        let abs_x = self.builder.ins().fabs(x);
        let abs_y = self.builder.ins().fabs(y);
        let signed_zero = self.copysign(zero, y);
        let zeros = self.select_float(FloatCC::LessThan, sign_of_x, zero, signed_pi, signed_zero);
        let magnitudes = self.builder.ins().fadd(abs_x, abs_y);
        result = self.select_float(FloatCC::Equal, magnitudes, zero, zeros, result);
        // Both infinite: ±π/4 or ±3π/4.
        let infinity = self.float_constant(ty, f32::INFINITY);
        let quarter = self.float_constant(ty, std::f32::consts::FRAC_PI_4);
        let three_quarters = self.float_constant(ty, 3.0 * std::f32::consts::FRAC_PI_4);
        let corner = self.select_float(FloatCC::LessThan, sign_of_x, zero, three_quarters, quarter);
        let corner = self.copysign(corner, y);
        let both_infinite = self.builder.ins().fmin(abs_x, abs_y);
        result = self.select_float(FloatCC::Equal, both_infinite, infinity, corner, result);
        // NaN in either input wins (the selects above may have replaced it).
        let with_y = self.select_float(FloatCC::Unordered, y, y, y, result);
        self.select_float(FloatCC::Unordered, x, x, x, with_y)
    }

    /// The error function: Eigen's and XLA's rational approximation on [−4, 4] (erf is ±1 to
    /// float precision beyond), NaN passing through.
    pub fn erf(&mut self, x: Value) -> Value {
        let ty = self.builder.func.dfg.value_type(x);
        let low = self.float_constant(ty, -4.0);
        let high = self.float_constant(ty, 4.0);
        let clamped = self.select_float(FloatCC::LessThan, x, low, low, x);
        let clamped = self.select_float(FloatCC::GreaterThan, clamped, high, high, clamped);
        let x2 = self.builder.ins().fmul(clamped, clamped);
        let p = self.polynomial(
            x2,
            &[
                -2.726_142_3e-10,
                2.770_681_4e-8,
                -2.101_024e-6,
                -5.692_506_4e-5,
                -7.349_906_3e-4,
                -2.954_6e-3,
                -1.609_603_3e-2,
            ],
        );
        let p = self.builder.ins().fmul(p, clamped);
        let q = self.polynomial(
            x2,
            &[
                -1.456_607_2e-5,
                -2.133_740_6e-4,
                -1.682_827e-3,
                -7.373_329e-3,
                -1.426_474e-2,
            ],
        );
        self.builder.ins().fdiv(p, q)
    }
}
