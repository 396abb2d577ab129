//! Preference pairs as one batch of token rows.

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::data::EncodedPair;
use crate::error::RewardError;
use crate::rating::{MarginKind, Rating};

/// `P` pairs as `2P` right-padded rows: rows `0..P` are the chosen sides, rows `P..2P` the
/// rejected sides in the same order, so one forward pass scores both.
#[derive(Clone, Debug)]
pub struct PreferenceBatch<B: Backend> {
    /// Token ids, `[2P, T]`, right-padded with `pad_id` (never read: see `lengths`).
    pub tokens: Tensor<B, 2, Int>,
    /// Real tokens of each row, `2P` values in `1 ..= T`.
    pub lengths: Vec<usize>,
    /// The loss margin of each pair, `[P]`.
    pub margins: Tensor<B, 1>,
    /// The same margins on the host.
    pub margin_values: Vec<f64>,
    /// Each pair's rating.
    pub ratings: Vec<Option<Rating>>,
    /// Each pair's `is_safety` flag.
    pub is_safety: Vec<bool>,
    /// The loss is the summed pair loss divided by this: the pairs of the whole optimizer
    /// step, so that gradient accumulation over micro-batches gives the gradient of the mean.
    pub loss_denominator: f64,
}

impl<B: Backend> PreferenceBatch<B> {
    /// Stacks pairs; `loss_denominator` defaults to this batch's pair count (a plain mean).
    pub fn new<'a>(
        pairs: impl IntoIterator<Item = &'a EncodedPair>,
        margin: MarginKind,
        pad_id: u32,
        loss_denominator: Option<f64>,
        device: &B::Device,
    ) -> Result<Self, RewardError> {
        let pairs: Vec<&EncodedPair> = pairs.into_iter().collect();
        if pairs.is_empty() {
            return Err(RewardError::BadBatch("no pairs".into()));
        }
        let rows: Vec<&[u32]> = pairs
            .iter()
            .map(|p| p.chosen.as_slice())
            .chain(pairs.iter().map(|p| p.rejected.as_slice()))
            .collect();
        if let Some(i) = rows.iter().position(|r| r.is_empty()) {
            let pair = pairs[i % pairs.len()];
            return Err(RewardError::BadBatch(format!(
                "pair of line {} has an empty side",
                pair.line
            )));
        }
        let seq_len = rows.iter().map(|r| r.len()).max().unwrap_or(1);
        let mut ids = Vec::with_capacity(rows.len() * seq_len);
        for row in &rows {
            ids.extend(row.iter().map(|&t| i64::from(t)));
            ids.extend(std::iter::repeat_n(i64::from(pad_id), seq_len - row.len()));
        }
        let margin_values: Vec<f64> = pairs.iter().map(|p| p.margin(margin)).collect();
        let margins_f32: Vec<f32> = margin_values.iter().map(|&m| m as f32).collect();
        let n = pairs.len();
        Ok(Self {
            tokens: Tensor::from_data(TensorData::new(ids, [rows.len(), seq_len]), device),
            lengths: rows.iter().map(|r| r.len()).collect(),
            margins: Tensor::from_data(TensorData::new(margins_f32, [n]), device),
            margin_values,
            ratings: pairs.iter().map(|p| p.rating).collect(),
            is_safety: pairs.iter().map(|p| p.is_safety).collect(),
            loss_denominator: loss_denominator.unwrap_or(n as f64),
        })
    }

    /// Number of pairs `P`.
    pub fn n_pairs(&self) -> usize {
        self.ratings.len()
    }
}

/// A burn [`Batcher`] of encoded pairs (loss denominator: the batch's own pair count).
#[derive(Clone, Debug)]
pub struct PreferenceBatcher {
    /// Margin of each pair.
    pub margin: MarginKind,
    /// Padding id.
    pub pad_id: u32,
}

impl<B: Backend> Batcher<B, EncodedPair, PreferenceBatch<B>> for PreferenceBatcher {
    /// # Panics
    ///
    /// On an empty list or a pair with an empty side, which [`crate::PreferenceDataset`]
    /// never holds.
    fn batch(&self, items: Vec<EncodedPair>, device: &B::Device) -> PreferenceBatch<B> {
        PreferenceBatch::new(&items, self.margin, self.pad_id, None, device)
            .expect("encoded pairs make a batch")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend as B;

    fn pair(chosen: &[u32], rejected: &[u32], rating: Option<Rating>) -> EncodedPair {
        EncodedPair {
            chosen: chosen.to_vec(),
            rejected: rejected.to_vec(),
            margin: Some(0.7),
            rating,
            is_safety: false,
            truncated: false,
            line: 1,
        }
    }

    #[test]
    fn chosen_rows_then_rejected_rows_right_padded() {
        let pairs = [
            pair(&[1, 5, 2], &[1, 6, 6, 6, 2], Some(Rating::Better)),
            pair(&[1, 7], &[1, 8, 2], None),
        ];
        let b =
            PreferenceBatch::<B>::new(&pairs, MarginKind::Large, 0, Some(8.0), &Default::default())
                .unwrap();
        assert_eq!(b.tokens.dims(), [4, 5]);
        let ids: Vec<i64> = b
            .tokens
            .clone()
            .into_data()
            .convert::<i64>()
            .to_vec()
            .unwrap();
        assert_eq!(
            ids,
            [1, 5, 2, 0, 0, 1, 7, 0, 0, 0, 1, 6, 6, 6, 2, 1, 8, 2, 0, 0]
        );
        assert_eq!(b.lengths, [3, 2, 5, 3]);
        assert_eq!(b.margin_values, [2.0, 0.0]);
        assert_eq!((b.n_pairs(), b.loss_denominator), (2, 8.0));
        let b = PreferenceBatch::<B>::new(&pairs, MarginKind::Column, 0, None, &Default::default())
            .unwrap();
        assert_eq!(
            (b.margin_values.clone(), b.loss_denominator),
            (vec![0.7, 0.7], 2.0)
        );
    }

    #[test]
    fn empty_batches_and_sides_are_errors() {
        let device = Default::default();
        assert!(PreferenceBatch::<B>::new(&[], MarginKind::None, 0, None, &device).is_err());
        let pairs = [pair(&[1], &[], None)];
        let err =
            PreferenceBatch::<B>::new(&pairs, MarginKind::None, 0, None, &device).unwrap_err();
        assert!(matches!(err, RewardError::BadBatch(_)), "{err}");
    }
}
