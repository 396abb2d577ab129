//! One training example: `seq_len` input tokens and their next-token targets.

/// Target id of a position that does not contribute to the loss (PyTorch's
/// `CrossEntropyLoss(ignore_index=-100)` convention).
pub const IGNORE_INDEX: i64 = -100;

/// A fixed-length training window: `inputs[i]` is fed to the model and
/// `targets[i]` is the token it must predict there, or [`IGNORE_INDEX`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenWindow {
    /// Input token ids, `seq_len` of them.
    pub inputs: Vec<u32>,
    /// Next-token targets, `seq_len` of them; [`IGNORE_INDEX`] where masked.
    pub targets: Vec<i64>,
}

impl TokenWindow {
    /// A window over `seq_len + 1` tokens where `trained[j]` says whether token
    /// `j` is a target (it is then predicted from position `j - 1`);
    /// `trained[0]` is ignored.
    pub fn from_tokens(tokens: &[u32], trained: &[bool]) -> Self {
        assert_eq!(tokens.len(), trained.len());
        assert!(tokens.len() >= 2, "a window needs at least two tokens");
        let inputs = tokens[..tokens.len() - 1].to_vec();
        let targets = tokens[1..]
            .iter()
            .zip(&trained[1..])
            .map(|(&t, &on)| if on { i64::from(t) } else { IGNORE_INDEX })
            .collect();
        Self { inputs, targets }
    }

    /// A window where every next token is a target (pretraining).
    pub fn all_trained(tokens: &[u32]) -> Self {
        Self::from_tokens(tokens, &vec![true; tokens.len()])
    }

    /// Number of positions that contribute to the loss.
    pub fn n_targets(&self) -> usize {
        self.targets.iter().filter(|&&t| t != IGNORE_INDEX).count()
    }

    /// The window length (`seq_len`).
    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    /// Whether the window is empty (never for windows built by this crate).
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }
}
