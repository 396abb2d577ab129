//! Best-of-K selection.

/// Index of the highest score; on ties the first one, so a selection never depends on
/// anything but the order of the candidates. `None` when there is no candidate or a score
/// is NaN.
pub fn best_of(scores: &[f64]) -> Option<usize> {
    if scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let mut best: Option<usize> = None;
    for (i, &s) in scores.iter().enumerate() {
        if best.is_none_or(|b| s > scores[b]) {
            best = Some(i);
        }
    }
    best
}

/// Mean of `values` (NaN when empty).
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Median of `values` (the mean of the middle two for an even count; NaN when empty).
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The expected max and median reward of `N = 1 ..= K` samples per prompt (the curves of
/// the paper's Figure 7): for each `N`, the mean over prompts of the max and of the median
/// of their first `N` samples.
pub fn best_of_n_curve(scores: &[Vec<f64>]) -> Vec<(usize, f64, f64)> {
    let k = scores.iter().map(Vec::len).min().unwrap_or(0);
    (1..=k)
        .map(|n| {
            let max: Vec<f64> = scores
                .iter()
                .map(|s| s[..n].iter().copied().fold(f64::NEG_INFINITY, f64::max))
                .collect();
            let med: Vec<f64> = scores.iter().map(|s| median(&s[..n])).collect();
            (n, mean(&max), mean(&med))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_of_equal_best_scores_wins() {
        assert_eq!(best_of(&[0.1, 0.5, 0.5, -1.0]), Some(1));
        assert_eq!(best_of(&[2.0]), Some(0));
        assert_eq!(best_of(&[-1.0, -1.0]), Some(0));
        assert_eq!(best_of(&[f64::NEG_INFINITY, -3.0]), Some(1));
        assert_eq!(best_of(&[]), None);
        assert_eq!(best_of(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn best_of_n_curves_by_hand() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        let curve = best_of_n_curve(&[vec![1.0, 3.0, 2.0], vec![0.0, -1.0, 5.0]]);
        assert_eq!(curve.len(), 3);
        // N = 1: max = median = first sample: (1 + 0) / 2.
        assert_eq!(curve[0], (1, 0.5, 0.5));
        // N = 2: max (3, 0), median (2, −0.5).
        assert_eq!(curve[1], (2, 1.5, 0.75));
        // N = 3: max (3, 5), median (2, 0).
        assert_eq!(curve[2], (3, 4.0, 1.0));
    }
}
