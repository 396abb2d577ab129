//! Choosing the next token from a row of logits.
//!
//! [`SamplerConfig`] describes the policy (greedy, temperature, top-k, top-p
//! and a seed) and [`Sampler`] applies it with a seeded ChaCha8 generator, so a
//! seed reproduces its draws exactly (and the tokens, as long as the logits
//! are the same, i.e. on the same backend).
//!
//! The policy is Meta's `Llama.generate`: temperature 0 is greedy (argmax);
//! otherwise `softmax(logits / temperature)` is filtered by `sample_top_p`
//! (probabilities sorted in descending order, every token whose cumulative
//! probability *before* it exceeds `top_p` is dropped, the rest renormalised)
//! and one token is drawn. Top-k, which Meta does not have, keeps only the
//! `k` most probable tokens before the top-p filter.
//!
//! Sampling runs on the host in f64 over one row of `vocab_size` f32 logits.
//!
//! # Shapes
//!
//! - logits: one row, `[vocab_size]`

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::error::GenerationError;

/// How to choose the next token.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    /// Softmax temperature; `0` is greedy decoding. Must be finite and `≥ 0`.
    pub temperature: f32,
    /// Nucleus threshold in `[0, 1]`; `1` keeps every token, `0` only the most probable.
    pub top_p: f32,
    /// Keep only the `k` most probable tokens (`None`: no limit). Must be `≥ 1`.
    pub top_k: Option<usize>,
    /// Seed of the random generator.
    pub seed: u64,
}

impl Default for SamplerConfig {
    /// Meta's `text_completion` defaults: temperature 0.6, top-p 0.9.
    fn default() -> Self {
        Self {
            temperature: 0.6,
            top_p: 0.9,
            top_k: None,
            seed: 0,
        }
    }
}

impl SamplerConfig {
    /// Greedy decoding (argmax, no randomness).
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            top_k: None,
            seed: 0,
        }
    }

    /// Temperature and top-p sampling, Meta's policy.
    pub fn new(temperature: f32, top_p: f32) -> Self {
        Self {
            temperature,
            top_p,
            ..Self::default()
        }
    }

    /// The same policy with a top-k limit.
    pub fn with_top_k(mut self, k: usize) -> Self {
        self.top_k = Some(k);
        self
    }

    /// The same policy with another seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Whether this configuration always picks the most probable token.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<(), GenerationError> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(GenerationError::InvalidSampler(format!(
                "temperature must be finite and ≥ 0, got {}",
                self.temperature
            )));
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            return Err(GenerationError::InvalidSampler(format!(
                "top_p must be in [0, 1], got {}",
                self.top_p
            )));
        }
        if self.top_k == Some(0) {
            return Err(GenerationError::InvalidSampler(
                "top_k must be ≥ 1".to_string(),
            ));
        }
        Ok(())
    }

    /// A sampler for one sequence, seeded with `seed` on stream 0.
    pub fn build(&self) -> Result<Sampler, GenerationError> {
        self.build_stream(0)
    }

    /// A sampler seeded with `seed` on the independent ChaCha stream `stream`
    /// (the generation loop gives batch row `i` stream `i`, so row 0 of a batch
    /// draws what the same prompt alone would draw).
    pub fn build_stream(&self, stream: u64) -> Result<Sampler, GenerationError> {
        self.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(stream);
        Ok(Sampler {
            config: self.clone(),
            rng,
        })
    }
}

/// A [`SamplerConfig`] with its random generator.
#[derive(Debug, Clone)]
pub struct Sampler {
    config: SamplerConfig,
    rng: ChaCha8Rng,
}

impl Sampler {
    /// The policy.
    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// Chooses a token from one row of logits. Greedy decoding draws nothing
    /// from the generator.
    ///
    /// Returns `None` for an empty row.
    pub fn sample(&mut self, logits: &[f32]) -> Option<u32> {
        if self.config.is_greedy() {
            return argmax(logits);
        }
        let candidates = self.candidates(logits);
        let total: f64 = candidates.iter().map(|&(_, p)| p).sum();
        let mut u = self.rng.random::<f64>() * total;
        for &(id, p) in &candidates {
            if u < p {
                return Some(id);
            }
            u -= p;
        }
        // Rounding left `u` at the very end: the last candidate.
        candidates.last().map(|&(id, _)| id)
    }

    /// The distribution [`sample`](Self::sample) draws from: `(token, probability)`
    /// pairs in descending order of probability, summing to 1. For greedy
    /// decoding, the argmax with probability 1.
    pub fn distribution(&self, logits: &[f32]) -> Vec<(u32, f64)> {
        if self.config.is_greedy() {
            return argmax(logits).map(|id| (id, 1.0)).into_iter().collect();
        }
        let mut c = self.candidates(logits);
        let total: f64 = c.iter().map(|&(_, p)| p).sum();
        for (_, p) in &mut c {
            *p /= total;
        }
        c
    }

    /// Tokens kept by top-k and top-p with their (unnormalised after the cut)
    /// probabilities, in descending order.
    fn candidates(&self, logits: &[f32]) -> Vec<(u32, f64)> {
        let t = f64::from(self.config.temperature);
        let mut probs = softmax(logits, t)
            .into_iter()
            .enumerate()
            .map(|(i, p)| (i as u32, p))
            .collect::<Vec<_>>();
        // Descending probability, lower id first on ties (a stable order).
        probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if let Some(k) = self.config.top_k {
            probs.truncate(k.max(1));
        }
        // Meta's sample_top_p: drop where cumsum - p > top_p.
        let top_p = f64::from(self.config.top_p);
        let mut before = 0.0;
        let mut keep = 0;
        for &(_, p) in &probs {
            if before > top_p {
                break;
            }
            before += p;
            keep += 1;
        }
        probs.truncate(keep.max(1));
        probs
    }
}

/// Index of the largest value (the first one on ties; NaN never wins).
pub fn argmax(values: &[f32]) -> Option<u32> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in values.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i as u32)
        .or((!values.is_empty()).then_some(0))
}

/// `softmax(logits / temperature)` in f64.
pub fn softmax(logits: &[f32], temperature: f64) -> Vec<f64> {
    let scaled = logits
        .iter()
        .map(|&l| f64::from(l) / temperature)
        .collect::<Vec<_>>();
    let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exp = scaled.iter().map(|&s| (s - max).exp()).collect::<Vec<_>>();
    let sum: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// `log_softmax(logits)` in f64.
pub fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits
        .iter()
        .map(|&l| f64::from(l))
        .fold(f64::NEG_INFINITY, f64::max);
    let lse = max
        + logits
            .iter()
            .map(|&l| (f64::from(l) - max).exp())
            .sum::<f64>()
            .ln();
    logits.iter().map(|&l| f64::from(l) - lse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOGITS: [f32; 6] = [1.0, 3.0, 2.5, -1.0, 3.0, 0.0];

    #[test]
    fn greedy_is_first_argmax() {
        let mut s = SamplerConfig::greedy().build().unwrap();
        assert_eq!(s.sample(&LOGITS), Some(1));
        assert_eq!(s.sample(&[]), None);
        assert_eq!(argmax(&[f32::NAN, 0.5, 0.2]), Some(1));
    }

    #[test]
    fn top_p_matches_meta_sample_top_p() {
        // Hand computation of Meta's rule on probs [0.5, 0.3, 0.15, 0.05]:
        // cumsum - p = [0, 0.5, 0.8, 0.95]; with p = 0.6 the mask `> 0.6`
        // drops the last two, leaving [0.5, 0.3] / 0.8.
        let probs = [0.5f64, 0.3, 0.15, 0.05];
        let logits = probs.map(|p| p.ln() as f32);
        let s = SamplerConfig::new(1.0, 0.6).build().unwrap();
        let d = s.distribution(&logits);
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].0, d[1].0), (0, 1));
        assert!((d[0].1 - 0.625).abs() < 1e-6 && (d[1].1 - 0.375).abs() < 1e-6);
        // p = 0.45: only the first token has cumsum - p ≤ p.
        let d = SamplerConfig::new(1.0, 0.45)
            .build()
            .unwrap()
            .distribution(&logits);
        assert_eq!(d, vec![(0, 1.0)]);
    }

    #[test]
    fn top_p_zero_and_top_k_one_are_greedy() {
        for config in [
            SamplerConfig::new(0.8, 0.0),
            SamplerConfig::new(5.0, 1.0).with_top_k(1),
        ] {
            let mut s = config.with_seed(7).build().unwrap();
            for _ in 0..50 {
                assert_eq!(s.sample(&LOGITS), Some(1));
            }
        }
    }

    #[test]
    fn top_k_keeps_k_most_probable() {
        let d = SamplerConfig::new(1.0, 1.0)
            .with_top_k(3)
            .build()
            .unwrap()
            .distribution(&LOGITS);
        assert_eq!(d.iter().map(|&(i, _)| i).collect::<Vec<_>>(), [1, 4, 2]);
    }

    #[test]
    fn seed_reproduces_and_streams_differ() {
        let draws = |stream| {
            let mut s = SamplerConfig::new(1.0, 1.0)
                .with_seed(42)
                .build_stream(stream)
                .unwrap();
            (0..64)
                .map(|_| s.sample(&LOGITS).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(0), draws(0));
        assert_ne!(draws(0), draws(1));
    }

    #[test]
    fn bad_values_are_errors() {
        for config in [
            SamplerConfig::new(-0.1, 0.9),
            SamplerConfig::new(f32::NAN, 0.9),
            SamplerConfig::new(f32::INFINITY, 0.9),
            SamplerConfig::new(1.0, 1.5),
            SamplerConfig::new(1.0, -0.1),
            SamplerConfig::new(1.0, 0.9).with_top_k(0),
        ] {
            assert!(matches!(
                config.build(),
                Err(GenerationError::InvalidSampler(_))
            ));
        }
    }

    #[test]
    fn log_softmax_normalises() {
        let l = log_softmax(&LOGITS);
        let s: f64 = l.iter().map(|x| x.exp()).sum();
        assert!((s - 1.0).abs() < 1e-12);
    }
}
