//! A held-out validation split of a dataset.

use std::sync::Arc;

use burn::data::dataset::Dataset;
use burn::data::dataset::transform::PartialDataset;

use super::error::DataError;

/// One part of a dataset split by [`holdout`].
pub type Split<D, I> = PartialDataset<Arc<D>, I>;

/// The training and held-out parts of [`holdout`].
pub type TrainAndHeldOut<D, I> = (Split<D, I>, Split<D, I>);

/// Splits `data` into a training part and a held-out part made of its last
/// `ceil(fraction · len)` items (contiguous, so held-out text is text the
/// model never trains on). `fraction = 0` holds nothing out.
pub fn holdout<D: Dataset<I>, I: Clone + Send + Sync>(
    data: D,
    fraction: f64,
) -> Result<TrainAndHeldOut<D, I>, DataError> {
    if !(0.0..1.0).contains(&fraction) {
        return Err(DataError::BadSplit(format!(
            "the validation fraction must be in [0, 1), not {fraction}"
        )));
    }
    let n = data.len();
    let held = (fraction * n as f64).ceil() as usize;
    if held >= n && n > 0 {
        return Err(DataError::BadSplit(format!(
            "a validation fraction of {fraction} of {n} items leaves nothing to train on"
        )));
    }
    let data = Arc::new(data);
    Ok((
        PartialDataset::new(data.clone(), 0, n - held),
        PartialDataset::new(data, n - held, n),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::data::dataset::InMemDataset;

    #[test]
    fn holds_out_the_tail() {
        let data = InMemDataset::new((0..10).collect::<Vec<u32>>());
        let (train, valid) = holdout(data, 0.25).unwrap();
        assert_eq!(train.len(), 7);
        assert_eq!(valid.len(), 3);
        assert_eq!(valid.get(0), Some(7));
        assert_eq!(train.get(6), Some(6));
        let (train, valid) = holdout(InMemDataset::new(vec![1u32, 2]), 0.0).unwrap();
        assert_eq!((train.len(), valid.len()), (2, 0));
        assert!(holdout(InMemDataset::new(vec![1u32]), 0.5).is_err());
        assert!(holdout(InMemDataset::new(vec![1u32, 2]), 1.0).is_err());
        assert!(holdout(InMemDataset::new(vec![1u32, 2]), f64::NAN).is_err());
    }
}
