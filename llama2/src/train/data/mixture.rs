//! Pretraining data mixtures (paper §2.1: the most factual sources are
//! up-sampled): several sources, each drawn with a probability proportional
//! to its weight.
//!
//! Item `i` of a [`MixtureDataset`] is a window of source `s_i`, where the
//! sources `s_0, s_1, …` are drawn from the weights by a generator seeded
//! with the mixture's seed, and each source hands out its windows in a
//! seeded random order without repetition until all have been used, then in
//! a new order (an up-sampled source repeats, a down-sampled one leaves some
//! windows out). The whole sequence is fixed by the seed, so a run resumed at
//! a data position sees what the uninterrupted run saw. Its length is the
//! sources' total window count (one "epoch" of the mixture); the trainer's
//! shuffling visits it in another order every epoch.

use burn::data::dataset::Dataset;
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::error::DataError;

/// Sources drawn by weight; see the module docs.
pub struct MixtureDataset<D> {
    sources: Vec<D>,
    weights: Vec<f64>,
    /// Per item: the source and the window within it.
    plan: Vec<(u16, u32)>,
}

impl<D> MixtureDataset<D> {
    /// Mixes `sources` with sampling `weights` (any positive numbers: the
    /// probability of a source is its weight over the sum), drawn with `seed`.
    pub fn new<I>(sources: Vec<D>, weights: Vec<f64>, seed: u64) -> Result<Self, DataError>
    where
        D: Dataset<I>,
    {
        if sources.is_empty() || sources.len() != weights.len() || sources.len() > 1 << 16 {
            return Err(DataError::BadSplit(format!(
                "a mixture needs one weight per source ({} sources, {} weights)",
                sources.len(),
                weights.len()
            )));
        }
        if let Some(w) = weights.iter().find(|w| !(w.is_finite() && **w > 0.0)) {
            return Err(DataError::BadSplit(format!(
                "mixture weights must be finite and positive, not {w}"
            )));
        }
        let sizes: Vec<usize> = sources.iter().map(|d| d.len()).collect();
        if let Some(empty) = sizes.iter().position(|&n| n == 0) {
            return Err(DataError::BadSplit(format!(
                "mixture source {empty} has no window"
            )));
        }
        let total: usize = sizes.iter().sum();
        if total > u32::MAX as usize {
            return Err(DataError::BadSplit(format!(
                "a mixture of {total} windows is larger than supported"
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let pick = WeightedIndex::new(&weights).expect("weights checked above");
        let mut orders: Vec<Vec<u32>> = vec![Vec::new(); sources.len()];
        let mut plan = Vec::with_capacity(total);
        for _ in 0..total {
            let s = pick.sample(&mut rng);
            if orders[s].is_empty() {
                let mut order: Vec<u32> = (0..sizes[s] as u32).collect();
                order.shuffle(&mut ChaCha8Rng::seed_from_u64(rng.random()));
                order.reverse();
                orders[s] = order;
            }
            let w = orders[s].pop().expect("refilled above");
            plan.push((s as u16, w));
        }
        Ok(Self {
            sources,
            weights,
            plan,
        })
    }

    /// The source of item `index`.
    pub fn source_of(&self, index: usize) -> Option<usize> {
        self.plan.get(index).map(|&(s, _)| s as usize)
    }

    /// The sampling weights, one per source.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }
}

impl<I: Send + Sync, D: Dataset<I>> Dataset<I> for MixtureDataset<D> {
    fn get(&self, index: usize) -> Option<I> {
        let &(s, w) = self.plan.get(index)?;
        self.sources[s as usize].get(w as usize)
    }

    fn len(&self) -> usize {
        self.plan.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::data::dataset::InMemDataset;

    fn sources() -> Vec<InMemDataset<(usize, usize)>> {
        [300usize, 1000, 200]
            .iter()
            .enumerate()
            .map(|(s, &n)| InMemDataset::new((0..n).map(|i| (s, i)).collect()))
            .collect()
    }

    /// The sources' shares match the weights: Pearson's chi-square over the
    /// 1500 draws stays below the 0.999 quantile of χ²(2) (13.8).
    #[test]
    fn proportions_follow_the_weights() {
        let weights = vec![3.0, 1.0, 2.0];
        let mix = MixtureDataset::new(sources(), weights.clone(), 42).unwrap();
        assert_eq!(mix.len(), 1500);
        let mut counts = [0usize; 3];
        for i in 0..mix.len() {
            let (s, _) = mix.get(i).unwrap();
            assert_eq!(mix.source_of(i), Some(s));
            counts[s] += 1;
        }
        let total: f64 = weights.iter().sum();
        let chi2: f64 = counts
            .iter()
            .zip(&weights)
            .map(|(&c, &w)| {
                let expected = 1500.0 * w / total;
                (c as f64 - expected).powi(2) / expected
            })
            .sum();
        assert!(chi2 < 13.8, "chi-square {chi2}, counts {counts:?}");
        // Source 0 (300 windows, drawn ~750 times) is up-sampled: every window is
        // used before any repeats.
        let first: Vec<usize> = (0..mix.len())
            .filter_map(|i| mix.get(i))
            .filter(|&(s, _)| s == 0)
            .map(|(_, w)| w)
            .take(300)
            .collect();
        let mut sorted = first.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..300).collect::<Vec<_>>());
    }

    #[test]
    fn the_seed_fixes_the_sequence() {
        let a = MixtureDataset::new(sources(), vec![1.0, 1.0, 1.0], 7).unwrap();
        let b = MixtureDataset::new(sources(), vec![1.0, 1.0, 1.0], 7).unwrap();
        let c = MixtureDataset::new(sources(), vec![1.0, 1.0, 1.0], 8).unwrap();
        let seq = |m: &MixtureDataset<_>| (0..m.len()).map(|i| m.get(i)).collect::<Vec<_>>();
        assert_eq!(seq(&a), seq(&b));
        assert_ne!(seq(&a), seq(&c));
        assert!(MixtureDataset::new(sources(), vec![1.0, 0.0, 1.0], 7).is_err());
        assert!(MixtureDataset::new(sources(), vec![1.0, f64::NAN, 1.0], 7).is_err());
        assert!(MixtureDataset::new(sources(), vec![1.0], 7).is_err());
    }
}
