//! Seeded generators of the data sets that Hyperloop is measured on (tests and benches use
//! the same ones): random bytes, ReLU activations (f32, half zeros), bf16 weights drawn from
//! normal(0, 0.02), and zero-heavy buffers (90% all-zero pages, the rest random).
//!
//! Deterministic for a given seed on every platform (SplitMix64 + Box–Muller).

use crate::page::ElemWidth;

/// SplitMix64: small, fast, good enough for test data.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }
    /// Two independent standard normal samples.
    pub fn normal_pair(&mut self) -> (f64, f64) {
        let r = (-2.0 * self.unit().ln()).sqrt();
        let t = std::f64::consts::TAU * self.unit();
        (r * t.cos(), r * t.sin())
    }
}

/// The data sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dataset {
    /// Uniformly random bytes (incompressible).
    Random,
    /// f32 activations after ReLU: max(0, x), x ~ normal(0, 1): half zeros.
    ReluF32,
    /// bf16 weights ~ normal(0, 0.02).
    Bf16Weights,
    /// 90% of 64 KiB pages all zero, the others random bytes.
    ZeroHeavy,
}

impl Dataset {
    /// All data sets, in report order.
    pub const ALL: [Dataset; 4] = [
        Dataset::Random,
        Dataset::ReluF32,
        Dataset::Bf16Weights,
        Dataset::ZeroHeavy,
    ];
    /// Short name for bench ids.
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Random => "random",
            Dataset::ReluF32 => "relu_f32",
            Dataset::Bf16Weights => "bf16_weights",
            Dataset::ZeroHeavy => "zero_heavy",
        }
    }
    /// Element width hint.
    pub fn width(self) -> ElemWidth {
        match self {
            Dataset::Random | Dataset::ZeroHeavy => ElemWidth::U8,
            Dataset::ReluF32 => ElemWidth::F32,
            Dataset::Bf16Weights => ElemWidth::Bf16,
        }
    }
    /// `len` bytes of this data set from `seed`.
    pub fn generate(self, len: usize, seed: u64) -> Vec<u8> {
        match self {
            Dataset::Random => random_bytes(len, seed),
            Dataset::ReluF32 => relu_f32(len, seed),
            Dataset::Bf16Weights => bf16_weights(len, seed),
            Dataset::ZeroHeavy => zero_heavy(len, crate::page::DEFAULT_PAGE_SIZE, seed),
        }
    }
}

/// `len` random bytes.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut r = SplitMix64::new(seed);
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&r.next_u64().to_le_bytes());
    }
    v.truncate(len);
    v
}

/// `len` bytes of f32 ReLU activations (a trailing partial element is random bytes).
pub fn relu_f32(len: usize, seed: u64) -> Vec<u8> {
    let mut r = SplitMix64::new(seed);
    let mut v = Vec::with_capacity(len + 8);
    while v.len() + 8 <= len {
        let (a, b) = r.normal_pair();
        v.extend_from_slice(&(a.max(0.0) as f32).to_le_bytes());
        v.extend_from_slice(&(b.max(0.0) as f32).to_le_bytes());
    }
    let rest = random_bytes(len - v.len(), seed ^ 1);
    v.extend_from_slice(&rest);
    v
}

/// f32 → bf16 with round-to-nearest-even (NaN kept quiet).
pub fn f32_to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    let round = 0x7FFF + ((b >> 16) & 1);
    (b.wrapping_add(round) >> 16) as u16
}

/// `len` bytes of bf16 weights ~ normal(0, 0.02).
pub fn bf16_weights(len: usize, seed: u64) -> Vec<u8> {
    let mut r = SplitMix64::new(seed);
    let mut v = Vec::with_capacity(len + 4);
    while v.len() + 4 <= len {
        let (a, b) = r.normal_pair();
        v.extend_from_slice(&f32_to_bf16((a * 0.02) as f32).to_le_bytes());
        v.extend_from_slice(&f32_to_bf16((b * 0.02) as f32).to_le_bytes());
    }
    let rest = random_bytes(len - v.len(), seed ^ 1);
    v.extend_from_slice(&rest);
    v
}

/// `len` bytes in pages of `page_size`: 90% of pages (chosen at random) all zero, the rest
/// random bytes.
pub fn zero_heavy(len: usize, page_size: usize, seed: u64) -> Vec<u8> {
    let mut r = SplitMix64::new(seed);
    let mut v = vec![0u8; len];
    for page in v.chunks_mut(page_size.max(1)) {
        if r.next_u64().is_multiple_of(10) {
            let bytes = random_bytes(page.len(), r.next_u64());
            page.copy_from_slice(&bytes);
        }
    }
    v
}
