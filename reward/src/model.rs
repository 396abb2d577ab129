//! The reward model (paper §3.2.2): a Llama 2 trunk, initialised from a pretrained or chat
//! checkpoint, whose "classification head for next-token prediction is replaced with a
//! regression head for outputting a scalar reward". The score is read at the last real token
//! of each sequence, as transformers' `LlamaForSequenceClassification` does.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use llama2::Llama;
use llama2_import::seq_cls::placeholder_head;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::RewardError;
use crate::loss::RankingLossConfig;

/// Where the padding of a batch of token rows is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Padding {
    /// Real tokens first, padding after them (what [`crate::PreferenceBatch`] builds).
    #[default]
    Right,
    /// Padding first, real tokens at the end of each row.
    Left,
}

/// How the score head of a new reward model is initialised.
///
/// transformers initialises `LlamaForSequenceClassification.score` with
/// `normal(0, initializer_range = 0.02)`; this draws the same distribution from a seeded
/// ChaCha8 generator (Box–Muller), so a given seed always gives the same head.
#[derive(Config, Debug)]
pub struct RewardModelConfig {
    /// Standard deviation of the score weights.
    #[config(default = 0.02)]
    pub init_std: f64,
    /// Seed of the score weights.
    #[config(default = 0)]
    pub seed: u64,
}

impl RewardModelConfig {
    /// A reward model on `trunk`'s device: the trunk's LM head is replaced by a
    /// `dim → 1` zero placeholder (the `[dim, vocab]` head is dropped), and a bias-free
    /// `dim → 1` score head is drawn as described above.
    pub fn init<B: Backend>(&self, trunk: Llama<B>) -> RewardModel<B> {
        let dim = trunk.config.dim;
        let device = trunk.devices()[0].clone();
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let values: Vec<f32> = (0..dim)
            .map(|_| {
                // Box–Muller: u1 in (0, 1] so the logarithm is finite.
                let u1 = 1.0 - rng.random::<f64>();
                let u2 = rng.random::<f64>();
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                (z * self.init_std) as f32
            })
            .collect();
        let weight = Tensor::from_data(TensorData::new(values, [dim, 1]), &device);
        let score = Linear {
            weight: Param::from_tensor(weight),
            bias: None,
        };
        RewardModel::from_parts(trunk, score)
    }
}

/// A scalar reward model: a Llama 2 trunk and a bias-free `dim → 1` score head on the final
/// hidden state of each sequence's last real token. Parameter paths are `trunk.*` (Meta's
/// names) and `score.weight` (`[dim, 1]`).
#[derive(Module, Debug)]
pub struct RewardModel<B: Backend> {
    /// The transformer; its `output` is a `dim → 1` placeholder, never read.
    pub trunk: Llama<B>,
    /// The regression head, `dim → 1`, no bias.
    pub score: Linear<B>,
    /// The training objective [`burn::train::TrainStep`] applies (a setting, not saved).
    pub objective: RankingLossConfig,
}

impl<B: Backend> RewardModel<B> {
    /// Assembles a model from a trunk and a score head (e.g. read by
    /// [`llama2_import::SeqClsCheckpoint::into_parts`]). The trunk's LM head is replaced by
    /// a placeholder.
    pub fn from_parts(mut trunk: Llama<B>, score: Linear<B>) -> Self {
        let device = trunk.devices()[0].clone();
        trunk.output = placeholder_head(trunk.config.dim, &device);
        Self {
            trunk,
            score,
            objective: RankingLossConfig::new(),
        }
    }

    /// The same model trained with another objective.
    pub fn with_objective(mut self, objective: RankingLossConfig) -> Self {
        self.objective = objective;
        self
    }

    /// The reward of each row, read at its last real token (position `lengths[i] − 1` of the
    /// row once right-aligned). Pad ids are never looked at: the lengths say where each row
    /// ends.
    ///
    /// Right-padded rows need no attention mask: attention is causal, so real tokens never
    /// see the padding after them. Left-padded rows are first rotated to right padding
    /// (row `i` is shifted left by `seq_len − lengths[i]`), so every real token keeps
    /// position `0 .. lengths[i]` and the rewards equal those of the same rows right-padded
    /// (and those of each row alone).
    ///
    /// # Shapes
    ///
    /// - tokens: `[batch, seq_len]`
    /// - lengths: `batch` values in `1 ..= seq_len`
    /// - output: `[batch]`
    ///
    /// # Errors
    ///
    /// [`RewardError::BadBatch`] when the lengths do not fit the tokens or `seq_len` exceeds
    /// the trunk's rotary tables.
    pub fn forward(
        &self,
        tokens: Tensor<B, 2, Int>,
        lengths: &[usize],
        padding: Padding,
    ) -> Result<Tensor<B, 1>, RewardError> {
        let [batch, seq_len] = tokens.dims();
        check_lengths(batch, seq_len, lengths)?;
        let max = self.trunk.rope.max_positions();
        if seq_len > max {
            return Err(RewardError::BadBatch(format!(
                "{seq_len} tokens per row exceed the model's {max} positions"
            )));
        }
        let device = tokens.device();
        let tokens = match padding {
            Padding::Right => tokens,
            Padding::Left => {
                let index: Vec<i64> = lengths
                    .iter()
                    .flat_map(|&len| {
                        let shift = seq_len - len;
                        (0..seq_len).map(move |j| ((j + shift) % seq_len) as i64)
                    })
                    .collect();
                let index = Tensor::from_data(TensorData::new(index, [batch, seq_len]), &device);
                tokens.gather(1, index)
            }
        };
        let hidden = self.trunk.hidden_states(tokens, 0, None);
        Ok(self.score_last(hidden, lengths))
    }

    /// The score head on every position: the value estimate of each prefix, as PPO's value
    /// model reads it (a reward model's trunk and head, applied per token).
    ///
    /// # Shapes
    ///
    /// - tokens: `[batch, seq_len]`
    /// - output: `[batch, seq_len]`
    pub fn values(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 2> {
        let [batch, seq_len] = tokens.dims();
        let hidden = self.trunk.hidden_states(tokens, 0, None);
        self.score.forward(hidden).reshape([batch, seq_len])
    }

    /// The reward of each token sequence (e.g. a prompt and a sampled response in the chat
    /// format), scored `batch_size` sequences at a time as right-padded batches.
    ///
    /// # Errors
    ///
    /// [`RewardError::BadBatch`] for an empty sequence, a batch size of 0 or a sequence
    /// longer than the rotary tables.
    pub fn score_sequences(
        &self,
        sequences: &[Vec<u32>],
        batch_size: usize,
    ) -> Result<Vec<f32>, RewardError> {
        if batch_size == 0 {
            return Err(RewardError::BadBatch("batch size 0".into()));
        }
        let device = self.trunk.tok_embeddings.weight.device();
        let mut rewards = Vec::with_capacity(sequences.len());
        for chunk in sequences.chunks(batch_size) {
            let lengths: Vec<usize> = chunk.iter().map(Vec::len).collect();
            let seq_len = lengths.iter().copied().max().unwrap_or(0).max(1);
            let mut ids = Vec::with_capacity(chunk.len() * seq_len);
            for row in chunk {
                ids.extend(row.iter().map(|&t| i64::from(t)));
                ids.extend(std::iter::repeat_n(0i64, seq_len - row.len()));
            }
            let tokens = Tensor::from_data(TensorData::new(ids, [chunk.len(), seq_len]), &device);
            let scores = self.forward(tokens, &lengths, Padding::Right)?;
            let scores = scores.into_data().convert::<f32>();
            rewards.extend(scores.to_vec::<f32>().map_err(|e| {
                RewardError::BadBatch(format!("cannot read the rewards back: {e:?}"))
            })?);
        }
        Ok(rewards)
    }

    /// The score head on the hidden state at `lengths[i] − 1` of each right-padded row.
    ///
    /// # Shapes
    ///
    /// - hidden: `[batch, seq_len, dim]`
    /// - output: `[batch]`
    fn score_last(&self, hidden: Tensor<B, 3>, lengths: &[usize]) -> Tensor<B, 1> {
        let [batch, seq_len, dim] = hidden.dims();
        let rows: Vec<i64> = lengths
            .iter()
            .enumerate()
            .map(|(i, &len)| (i * seq_len + len - 1) as i64)
            .collect();
        let rows = Tensor::<B, 1, Int>::from_data(TensorData::new(rows, [batch]), &hidden.device());
        let last = hidden.reshape([batch * seq_len, dim]).select(0, rows);
        self.score.forward(last).reshape([batch])
    }
}

/// Checks that `lengths` has one value in `1 ..= seq_len` per row.
pub(crate) fn check_lengths(
    batch: usize,
    seq_len: usize,
    lengths: &[usize],
) -> Result<(), RewardError> {
    if lengths.len() != batch {
        return Err(RewardError::BadBatch(format!(
            "{} lengths for {batch} rows",
            lengths.len()
        )));
    }
    if let Some((row, &len)) = lengths
        .iter()
        .enumerate()
        .find(|&(_, &len)| len == 0 || len > seq_len)
    {
        return Err(RewardError::BadBatch(format!(
            "row {row} has length {len}, expected 1 ..= {seq_len}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend as B;
    use llama2::LlamaConfig;

    fn model() -> RewardModel<B> {
        let config = LlamaConfig::new(32, 2, 4, 2, 50)
            .with_multiple_of(16)
            .with_max_seq_len(16);
        RewardModelConfig::new()
            .with_init_std(1.0)
            .init(config.init::<B>(&Default::default()))
    }

    fn rows(ids: &[i64], batch: usize) -> Tensor<B, 2, Int> {
        Tensor::from_data(
            TensorData::new(ids.to_vec(), [batch, ids.len() / batch]),
            &Default::default(),
        )
    }

    fn values(t: Tensor<B, 1>) -> Vec<f32> {
        t.into_data().to_vec().unwrap()
    }

    #[test]
    fn the_score_head_is_seeded_small_and_the_lm_head_is_dropped() {
        let trunk = || {
            LlamaConfig::new(64, 1, 4, 4, 50)
                .with_max_seq_len(8)
                .init::<B>(&Default::default())
        };
        let weights = |seed| {
            let m = RewardModelConfig::new().with_seed(seed).init(trunk());
            assert_eq!(m.trunk.output.weight.dims(), [64, 1]);
            m.score.weight.val().into_data().to_vec::<f32>().unwrap()
        };
        let (a, b) = (weights(3), weights(3));
        assert_eq!(a, b);
        assert_ne!(a, weights(4));
        let std = (a.iter().map(|x| x * x).sum::<f32>() / a.len() as f32).sqrt();
        assert!((0.01..0.04).contains(&std), "std {std}");
    }

    #[test]
    fn padding_on_either_side_gives_the_rewards_of_each_row_alone() {
        let m = model();
        let a = [5i64, 9, 3, 7, 1];
        let b = [4i64, 8];
        let alone: Vec<f32> = [&a[..], &b[..]]
            .iter()
            .flat_map(|r| values(m.forward(rows(r, 1), &[r.len()], Padding::Right).unwrap()))
            .collect();
        // Pads are ids that also occur as real tokens: only the lengths may decide.
        let right = [5, 9, 3, 7, 1, 4, 8, 5, 9, 3];
        let left = [5, 9, 3, 7, 1, 5, 9, 3, 4, 8];
        for (ids, padding) in [(right, Padding::Right), (left, Padding::Left)] {
            let got = values(m.forward(rows(&ids, 2), &[5, 2], padding).unwrap());
            for (g, e) in got.iter().zip(&alone) {
                assert!((g - e).abs() < 1e-5, "{padding:?}: {got:?} vs {alone:?}");
            }
        }
        assert!(
            (alone[0] - alone[1]).abs() > 1e-4,
            "rows must differ: {alone:?}"
        );
    }

    #[test]
    fn score_sequences_batches_like_one_by_one() {
        let m = model();
        let seqs = vec![vec![5u32, 9, 3, 7, 1], vec![4, 8], vec![2, 2, 2], vec![6]];
        let alone: Vec<f32> = seqs
            .iter()
            .flat_map(|s| m.score_sequences(std::slice::from_ref(s), 1).unwrap())
            .collect();
        let batched = m.score_sequences(&seqs, 3).unwrap();
        assert_eq!(batched.len(), seqs.len());
        for (b, a) in batched.iter().zip(&alone) {
            assert!((b - a).abs() < 1e-5, "{batched:?} vs {alone:?}");
        }
        assert!(m.score_sequences(&seqs, 0).is_err());
        assert!(m.score_sequences(&[vec![1], vec![]], 2).is_err());
    }

    #[test]
    fn bad_lengths_are_errors() {
        let m = model();
        for lengths in [&[3usize][..], &[0, 2], &[2, 6]] {
            let err = m
                .forward(
                    rows(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 2),
                    lengths,
                    Padding::Left,
                )
                .unwrap_err();
            assert!(matches!(err, RewardError::BadBatch(_)), "{err}");
        }
        let long: Vec<i64> = (0..33).collect();
        let err = m
            .forward(rows(&long, 1), &[33], Padding::Right)
            .unwrap_err();
        assert!(err.to_string().contains("32 positions"), "{err}");
    }
}
