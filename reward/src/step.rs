//! burn-train's [`TrainStep`] and [`InferenceStep`] for [`RewardModel`]: the margin ranking
//! loss ([`crate::loss`]) over a [`PreferenceBatch`], with the statistics a trainer logs.

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, Transaction};
use burn::train::{InferenceStep, ItemLazy, TrainOutput, TrainStep};

use crate::batch::PreferenceBatch;
use crate::model::{Padding, RewardModel};
use crate::rating::Rating;

/// Correct and total pairs of one rating.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BucketCount {
    /// Pairs with `r_c > r_r`.
    pub correct: usize,
    /// Pairs.
    pub total: usize,
}

impl BucketCount {
    /// `correct / total`, `None` for an empty bucket.
    pub fn accuracy(&self) -> Option<f64> {
        (self.total > 0).then(|| self.correct as f64 / self.total as f64)
    }

    /// The sum of two counts.
    pub fn merge(self, other: Self) -> Self {
        Self {
            correct: self.correct + other.correct,
            total: self.total + other.total,
        }
    }
}

/// The loss and rewards of one (micro-)batch, read back lazily.
#[derive(Clone, Debug)]
pub struct RewardOutput<B: Backend> {
    /// Summed pair loss (plus the optional centring term) / the batch's
    /// `loss_denominator`, `[1]`.
    pub loss: Tensor<B, 1>,
    /// Rewards of the `2P` rows (chosen first), detached, `[2P]`.
    pub rewards: Tensor<B, 1>,
    /// Each pair's rating.
    pub ratings: Vec<Option<Rating>>,
    /// Tokens fed (`2P × T`).
    pub n_inputs: usize,
}

/// [`RewardOutput`] read back to the host.
#[derive(Clone, Debug, PartialEq)]
pub struct RewardOutputSync {
    /// The loss value.
    pub loss: f64,
    /// Pairs in the batch.
    pub n_pairs: usize,
    /// Tokens fed (padding included).
    pub n_inputs: usize,
    /// Pairs with `r_c > r_r` (strictly; a tie is wrong).
    pub correct: usize,
    /// `Σ (r_c − r_r)`.
    pub margin_sum: f64,
    /// `Σ r` over the `2P` rewards.
    pub reward_sum: f64,
    /// `Σ r²` over the `2P` rewards.
    pub reward_sq_sum: f64,
    /// Correct / total pairs per rating, indexed by [`Rating::index`].
    pub by_rating: [BucketCount; 5],
    /// Pairs without a rating.
    pub unrated: BucketCount,
}

impl RewardOutputSync {
    /// Statistics of host rewards: `chosen[i]` against `rejected[i]`.
    pub fn from_rewards(
        loss: f64,
        chosen: &[f64],
        rejected: &[f64],
        ratings: &[Option<Rating>],
        n_inputs: usize,
    ) -> Self {
        let mut sync = Self {
            loss,
            n_pairs: chosen.len(),
            n_inputs,
            correct: 0,
            margin_sum: 0.0,
            reward_sum: 0.0,
            reward_sq_sum: 0.0,
            by_rating: [BucketCount::default(); 5],
            unrated: BucketCount::default(),
        };
        for ((&c, &r), rating) in chosen.iter().zip(rejected).zip(ratings) {
            let correct = c > r;
            sync.correct += usize::from(correct);
            sync.margin_sum += c - r;
            sync.reward_sum += c + r;
            sync.reward_sq_sum += c * c + r * r;
            let bucket = match rating {
                Some(rating) => &mut sync.by_rating[rating.index()],
                None => &mut sync.unrated,
            };
            bucket.total += 1;
            bucket.correct += usize::from(correct);
        }
        sync
    }
}

impl<B: Backend> ItemLazy for RewardOutput<B> {
    type ItemSync = RewardOutputSync;

    fn sync(self) -> RewardOutputSync {
        let [loss, rewards] = Transaction::default()
            .register(self.loss)
            .register(self.rewards)
            .execute()
            .try_into()
            .expect("two tensors");
        let loss = loss
            .convert::<f64>()
            .to_vec::<f64>()
            .ok()
            .and_then(|v| v.first().copied())
            .unwrap_or(f64::NAN);
        let rewards = rewards.convert::<f64>().to_vec::<f64>().unwrap_or_default();
        let n = self.ratings.len();
        let (chosen, rejected) = rewards.split_at(n.min(rewards.len()));
        RewardOutputSync::from_rewards(loss, chosen, rejected, &self.ratings, self.n_inputs)
    }
}

impl<B: Backend> RewardModel<B> {
    /// The batch loss under [`RewardModel::objective`].
    ///
    /// # Panics
    ///
    /// If the batch's lengths do not fit its tokens, which [`PreferenceBatch::new`] never
    /// builds.
    pub fn preference_loss(&self, batch: PreferenceBatch<B>) -> RewardOutput<B> {
        let [rows, seq_len] = batch.tokens.dims();
        let n = batch.n_pairs();
        let rewards = self
            .forward(batch.tokens, &batch.lengths, Padding::Right)
            .expect("a PreferenceBatch has valid lengths");
        let chosen = rewards.clone().narrow(0, 0, n);
        let rejected = rewards.clone().narrow(0, n, n);
        let loss = self
            .objective
            .init()
            .forward(chosen, rejected, batch.margins)
            .div_scalar(batch.loss_denominator);
        RewardOutput {
            loss,
            rewards: rewards.detach(),
            ratings: batch.ratings,
            n_inputs: rows * seq_len,
        }
    }
}

impl<B: AutodiffBackend> TrainStep for RewardModel<B> {
    type Input = PreferenceBatch<B>;
    type Output = RewardOutput<B>;

    fn step(&self, batch: PreferenceBatch<B>) -> TrainOutput<RewardOutput<B>> {
        let output = self.preference_loss(batch);
        let grads = output.loss.backward();
        TrainOutput::new(self, grads, output)
    }
}

impl<B: Backend> InferenceStep for RewardModel<B> {
    type Input = PreferenceBatch<B>;
    type Output = RewardOutput<B>;

    fn step(&self, batch: PreferenceBatch<B>) -> RewardOutput<B> {
        self.preference_loss(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::EncodedPair;
    use crate::loss::{RankingLossConfig, pair_loss_f64};
    use crate::model::RewardModelConfig;
    use crate::rating::MarginKind;
    use burn::backend::Autodiff;
    use burn::module::AutodiffModule;
    use llama2::LlamaConfig;

    type A = Autodiff<crate::TestBackend>;

    fn pairs() -> Vec<EncodedPair> {
        let pair = |c: &[u32], r: &[u32], rating| EncodedPair {
            chosen: c.to_vec(),
            rejected: r.to_vec(),
            margin: None,
            rating,
            is_safety: false,
            truncated: false,
            line: 1,
        };
        vec![
            pair(&[1, 4, 9, 2], &[1, 4, 2], Some(Rating::SignificantlyBetter)),
            pair(&[1, 7, 2], &[1, 3, 3, 8, 2], Some(Rating::Unsure)),
            pair(&[1, 5, 2], &[1, 6, 2], None),
        ]
    }

    #[test]
    fn the_step_loss_is_the_summed_pair_loss_over_the_denominator() {
        let device = Default::default();
        let trunk = LlamaConfig::new(32, 1, 4, 2, 16)
            .with_multiple_of(16)
            .with_max_seq_len(8)
            .init::<A>(&device);
        let model = RewardModelConfig::new()
            .with_init_std(1.0)
            .init(trunk)
            .with_objective(RankingLossConfig::new().with_center_rewards_coefficient(Some(0.1)));
        let pairs = pairs();
        let batch =
            PreferenceBatch::<A>::new(&pairs, MarginKind::Large, 0, Some(6.0), &device).unwrap();
        let output = TrainStep::step(&model, batch.clone());
        let sync = output.item.sync();

        // Rewards of each side alone, through the inference model.
        let valid = model.valid();
        let alone = |ids: &[u32]| {
            let t = burn::tensor::Tensor::<crate::TestBackend, 2, burn::tensor::Int>::from_data(
                burn::tensor::TensorData::new(
                    ids.iter().map(|&i| i64::from(i)).collect(),
                    [1, ids.len()],
                ),
                &device,
            );
            f64::from(
                valid
                    .forward(t, &[ids.len()], Padding::Right)
                    .unwrap()
                    .into_scalar(),
            )
        };
        let c: Vec<f64> = pairs.iter().map(|p| alone(&p.chosen)).collect();
        let r: Vec<f64> = pairs.iter().map(|p| alone(&p.rejected)).collect();
        let margins = [3.0, 0.0, 0.0];
        let expected: f64 = (0..3)
            .map(|i| pair_loss_f64(c[i], r[i], margins[i]) + 0.1 * (c[i] + r[i]).powi(2))
            .sum::<f64>()
            / 6.0;
        assert!(
            (sync.loss - expected).abs() < 1e-5 * expected.abs().max(1.0),
            "{} vs {expected}",
            sync.loss
        );
        assert_eq!((sync.n_pairs, sync.n_inputs), (3, 6 * 5));
        let correct = (0..3).filter(|&i| c[i] > r[i]).count();
        assert_eq!(sync.correct, correct);
        assert!((sync.margin_sum - (0..3).map(|i| c[i] - r[i]).sum::<f64>()).abs() < 1e-5);
        assert_eq!(sync.by_rating[0].total, 1);
        assert_eq!(sync.by_rating[4].total, 1);
        assert_eq!(sync.unrated.total, 1);
        assert!(
            c.iter().chain(&r).any(|x| x.abs() > 1e-3),
            "rewards {c:?} {r:?}"
        );

        // Gradients reach the score head and the trunk.
        let grads = model.preference_loss(batch).loss.backward();
        for grad in [
            model
                .score
                .weight
                .grad(&grads)
                .map(|g| g.abs().sum().into_scalar()),
            model
                .trunk
                .tok_embeddings
                .weight
                .grad(&grads)
                .map(|g| g.abs().sum().into_scalar()),
        ] {
            assert!(grad.is_some_and(|g| g > 0.0), "{grad:?}");
        }
        let batch = PreferenceBatch::new(&pairs, MarginKind::Large, 0, Some(6.0), &device).unwrap();
        let inference = InferenceStep::step(&valid, batch).sync();
        assert!((inference.loss - sync.loss).abs() < 1e-5, "{inference:?}");
    }

    #[test]
    fn micro_batches_over_the_step_pair_count_accumulate_to_the_full_batch_mean() {
        let device = Default::default();
        let trunk = LlamaConfig::new(32, 1, 4, 2, 16)
            .with_multiple_of(16)
            .with_max_seq_len(8)
            .init::<A>(&device);
        let model = RewardModelConfig::new().with_init_std(1.0).init(trunk);
        let pairs = pairs();
        let run = |pairs: &[EncodedPair], denominator| {
            let batch =
                PreferenceBatch::<A>::new(pairs, MarginKind::Small, 0, denominator, &device)
                    .unwrap();
            let loss = model.preference_loss(batch).loss;
            let value = f64::from(loss.clone().into_scalar());
            let grads = loss.backward();
            let grad: Vec<f32> = model
                .score
                .weight
                .grad(&grads)
                .unwrap()
                .into_data()
                .to_vec()
                .unwrap();
            (value, grad)
        };
        let (full, full_grad) = run(&pairs, None);
        let (a, a_grad) = run(&pairs[..1], Some(3.0));
        let (b, b_grad) = run(&pairs[1..], Some(3.0));
        assert!((a + b - full).abs() < 1e-5, "{a} + {b} vs {full}");
        let mut largest = 0f32;
        for ((g, ga), gb) in full_grad.iter().zip(&a_grad).zip(&b_grad) {
            assert!((ga + gb - g).abs() < 1e-5, "{ga} + {gb} vs {g}");
            largest = largest.max(g.abs());
        }
        assert!(largest > 1e-4, "gradient {full_grad:?}");
    }
}
