//! Reward model accuracy (paper §3.2.2, Tables 7 and 8): the fraction of pairs whose chosen
//! response scores strictly higher, overall and per preference rating, plus the mean margin
//! `r_c − r_r` and the reward statistics later stages whiten with.

use burn::tensor::backend::Backend;

use crate::batch::PreferenceBatch;
use crate::combine::RewardNormalization;
use crate::data::EncodedPair;
use crate::error::RewardError;
use crate::model::RewardModel;
use crate::rating::{MarginKind, Rating};
use crate::step::{BucketCount, RewardOutputSync};
use burn::train::ItemLazy;

/// Accumulated statistics of scored preference pairs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RewardMetrics {
    /// Pairs scored.
    pub pairs: usize,
    /// Pairs with `r_c > r_r`.
    pub correct: usize,
    /// Σ of the batch losses weighted by their pair counts (see [`mean_loss`](Self::mean_loss)).
    pub loss_sum: f64,
    /// `Σ (r_c − r_r)`.
    pub margin_sum: f64,
    /// `Σ r` over both sides.
    pub reward_sum: f64,
    /// `Σ r²` over both sides.
    pub reward_sq_sum: f64,
    /// Per rating, indexed by [`Rating::index`].
    pub by_rating: [BucketCount; 5],
    /// Pairs without a rating.
    pub unrated: BucketCount,
}

impl RewardMetrics {
    /// Adds a batch whose loss is a mean over its pairs (`loss_denominator` = its pairs).
    pub fn add(&mut self, batch: &RewardOutputSync) {
        self.pairs += batch.n_pairs;
        self.correct += batch.correct;
        self.loss_sum += batch.loss * batch.n_pairs as f64;
        self.margin_sum += batch.margin_sum;
        self.reward_sum += batch.reward_sum;
        self.reward_sq_sum += batch.reward_sq_sum;
        for (mine, theirs) in self.by_rating.iter_mut().zip(&batch.by_rating) {
            *mine = mine.merge(*theirs);
        }
        self.unrated = self.unrated.merge(batch.unrated);
    }

    /// Fraction of pairs ranked correctly (`None` without pairs).
    pub fn accuracy(&self) -> Option<f64> {
        BucketCount {
            correct: self.correct,
            total: self.pairs,
        }
        .accuracy()
    }

    /// The counts of one rating.
    pub fn bucket(&self, rating: Rating) -> BucketCount {
        self.by_rating[rating.index()]
    }

    /// The columns of the paper's Table 8: significantly better, better, slightly better,
    /// negligibly better / unsure.
    pub fn table8(&self) -> [BucketCount; 4] {
        let b = &self.by_rating;
        [b[0], b[1], b[2], b[3].merge(b[4])]
    }

    /// Mean pair loss.
    pub fn mean_loss(&self) -> Option<f64> {
        (self.pairs > 0).then(|| self.loss_sum / self.pairs as f64)
    }

    /// Mean `r_c − r_r`.
    pub fn mean_margin(&self) -> Option<f64> {
        (self.pairs > 0).then(|| self.margin_sum / self.pairs as f64)
    }

    /// Mean and population standard deviation of all `2 × pairs` rewards.
    pub fn normalization(&self) -> RewardNormalization {
        let n = 2 * self.pairs;
        if n == 0 {
            return RewardNormalization {
                mean: 0.0,
                std: 0.0,
                count: 0,
            };
        }
        let mean = self.reward_sum / n as f64;
        let var = (self.reward_sq_sum / n as f64 - mean * mean).max(0.0);
        RewardNormalization {
            mean,
            std: var.sqrt(),
            count: n as u64,
        }
    }
}

/// Scores held-out pairs `batch_size` at a time (loss under `margin` and the model's
/// objective) and returns their metrics; [`RewardMetrics::normalization`] gives the
/// statistics to store with the model.
pub fn evaluate<B: Backend>(
    model: &RewardModel<B>,
    pairs: &[EncodedPair],
    batch_size: usize,
    margin: MarginKind,
    pad_id: u32,
) -> Result<RewardMetrics, RewardError> {
    if batch_size == 0 {
        return Err(RewardError::BadBatch("batch size 0".into()));
    }
    let device = model.trunk.tok_embeddings.weight.device();
    let mut metrics = RewardMetrics::default();
    for chunk in pairs.chunks(batch_size) {
        let batch = PreferenceBatch::new(chunk, margin, pad_id, None, &device)?;
        let max = model.trunk.rope.max_positions();
        let seq_len = batch.tokens.dims()[1];
        if seq_len > max {
            return Err(RewardError::BadBatch(format!(
                "{seq_len} tokens per row exceed the model's {max} positions"
            )));
        }
        metrics.add(&model.preference_loss(batch).sync());
    }
    Ok(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accumulates_batches_into_table_8_columns() {
        use Rating::*;
        let ratings = [
            Some(SignificantlyBetter),
            Some(SignificantlyBetter),
            Some(NegligiblyBetter),
            Some(Unsure),
            None,
        ];
        let chosen = [2.0, 1.0, 0.5, 0.0, 3.0];
        let rejected = [1.0, 1.0, 0.0, 1.0, -3.0];
        let mut m = RewardMetrics::default();
        m.add(&RewardOutputSync::from_rewards(
            0.5,
            &chosen[..3],
            &rejected[..3],
            &ratings[..3],
            9,
        ));
        m.add(&RewardOutputSync::from_rewards(
            1.0,
            &chosen[3..],
            &rejected[3..],
            &ratings[3..],
            4,
        ));
        assert_eq!((m.pairs, m.correct), (5, 3));
        assert_eq!(m.accuracy(), Some(0.6));
        let t8 = m.table8();
        // A tie (1.0 vs 1.0) is not correct.
        assert_eq!((t8[0].correct, t8[0].total), (1, 2));
        assert_eq!((t8[1].total, t8[2].total), (0, 0));
        assert_eq!((t8[3].correct, t8[3].total), (1, 2));
        assert_eq!(t8[1].accuracy(), None);
        assert_eq!((m.unrated.correct, m.unrated.total), (1, 1));
        assert_eq!(m.mean_loss(), Some((0.5 * 3.0 + 1.0 * 2.0) / 5.0));
        assert_eq!(m.mean_margin(), Some((1.0 + 0.0 + 0.5 - 1.0 + 6.0) / 5.0));
        let all: Vec<f64> = chosen.iter().chain(&rejected).copied().collect();
        let stats = crate::combine::normalization(&all);
        let got = m.normalization();
        assert!((got.mean - stats.mean).abs() < 1e-12 && (got.std - stats.std).abs() < 1e-12);
        assert_eq!(got.count, 10);
    }
}
