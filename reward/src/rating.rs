//! Preference strength (paper §3.2.1) and the margins derived from it (§3.2.2, Table 27).
//!
//! Annotators label each comparison "significantly better, better, slightly better, or
//! negligibly better/unsure". The ranking loss subtracts a margin `m(r)` that grows with the
//! strength; Table 27 gives two sets, *small* `(1, 2/3, 1/3, 0)` and *large* `(3, 2, 1, 0)`
//! for significantly / better / slightly / negligibly better (unsure counts as negligibly
//! better).

use serde::{Deserialize, Serialize};

/// How much better the chosen response is, as the annotator rated it. JSON names are
/// `significantly_better`, `better`, `slightly_better`, `negligibly_better`, `unsure`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rating {
    /// Significantly better.
    SignificantlyBetter,
    /// Better.
    Better,
    /// Slightly better.
    SlightlyBetter,
    /// Negligibly better.
    NegligiblyBetter,
    /// Unsure (grouped with negligibly better in the paper).
    Unsure,
}

impl Rating {
    /// Every rating, in order of decreasing strength; `Rating::ALL[r.index()] == r`.
    pub const ALL: [Rating; 5] = [
        Rating::SignificantlyBetter,
        Rating::Better,
        Rating::SlightlyBetter,
        Rating::NegligiblyBetter,
        Rating::Unsure,
    ];

    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Rating::SignificantlyBetter => "significantly_better",
            Rating::Better => "better",
            Rating::SlightlyBetter => "slightly_better",
            Rating::NegligiblyBetter => "negligibly_better",
            Rating::Unsure => "unsure",
        }
    }

    /// Parses a JSON name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Position in [`Rating::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The column of the paper's Table 8 (0 significantly better, 1 better, 2 slightly
    /// better, 3 negligibly better / unsure).
    pub fn table8_column(self) -> usize {
        self.index().min(3)
    }
}

/// Where the margin `m` of the ranking loss comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarginKind {
    /// No margin: the binary ranking loss of InstructGPT (`m = 0`).
    #[default]
    None,
    /// Table 27's small margins `(1, 2/3, 1/3, 0)`; unrated pairs get 0.
    Small,
    /// Table 27's large margins `(3, 2, 1, 0)`; unrated pairs get 0.
    Large,
    /// The row's numeric `margin` column (0 where absent).
    Column,
}

impl MarginKind {
    /// The margin of a pair with this rating and `margin` column.
    pub fn margin(self, rating: Option<Rating>, column: Option<f64>) -> f64 {
        let table = match self {
            MarginKind::None => return 0.0,
            MarginKind::Column => return column.unwrap_or(0.0),
            MarginKind::Small => [1.0, 2.0 / 3.0, 1.0 / 3.0, 0.0],
            MarginKind::Large => [3.0, 2.0, 1.0, 0.0],
        };
        rating.map_or(0.0, |r| table[r.table8_column()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_27_margins() {
        use Rating::*;
        let small: Vec<f64> = Rating::ALL
            .iter()
            .map(|&r| MarginKind::Small.margin(Some(r), Some(9.0)))
            .collect();
        assert_eq!(small, [1.0, 2.0 / 3.0, 1.0 / 3.0, 0.0, 0.0]);
        let large: Vec<f64> = Rating::ALL
            .iter()
            .map(|&r| MarginKind::Large.margin(Some(r), None))
            .collect();
        assert_eq!(large, [3.0, 2.0, 1.0, 0.0, 0.0]);
        assert_eq!(MarginKind::Large.margin(None, Some(2.5)), 0.0);
        assert_eq!(MarginKind::Column.margin(Some(Better), Some(2.5)), 2.5);
        assert_eq!(MarginKind::Column.margin(Some(Better), None), 0.0);
        assert_eq!(
            MarginKind::None.margin(Some(SignificantlyBetter), Some(1.0)),
            0.0
        );
    }

    #[test]
    fn names_round_trip() {
        for r in Rating::ALL {
            assert_eq!(Rating::parse(r.as_str()), Some(r));
            assert_eq!(Rating::ALL[r.index()], r);
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.as_str()));
        }
        assert_eq!(Rating::parse("much_better"), None);
        assert_eq!(Rating::Unsure.table8_column(), 3);
    }
}
