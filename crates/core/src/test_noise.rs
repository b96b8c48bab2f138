//! Deterministic noise for the trend and window tests: both feed fits with
//! noisy, spiky series, and both must see the same kind of noise from one
//! generator rather than two copies that could drift apart.

/// xorshift64*: deterministic noise without a rand dependency.
pub(crate) struct Noise(pub(crate) u64);

impl Noise {
    /// Uniform in [0, 1).
    pub(crate) fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Approximately normal (Irwin–Hall of 12 uniforms), standard deviation 1.
    pub(crate) fn gaussian(&mut self) -> f64 {
        (0..12).map(|_| self.uniform()).sum::<f64>() - 6.0
    }
}
