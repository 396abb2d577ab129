//! Prompts with their responses as one right-padded batch, and the per-token
//! log-probabilities of the responses under a model (teacher forcing).
//!
//! Response token `j` of row `b` sits at sequence position `prompt_len[b] + j` and is
//! predicted by the logits at position `prompt_len[b] + j − 1`; that is also where a value
//! model's estimate of the state before the token is read (TRL's `context_length − 1 : −1`).

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use llama2::Llama;

use crate::error::RlhfError;

/// A batch of `[prompt ‖ response]` rows.
///
/// # Shapes
///
/// - `tokens`, `targets`: `[batch, seq_len]` (`targets[b, p] = tokens[b, p + 1]`)
/// - `positions`, `mask`: `[batch, response_len]`
#[derive(Clone, Debug)]
pub struct ResponseBatch<B: Backend> {
    /// The rows, right-padded with 0 (never read: attention is causal).
    pub tokens: Tensor<B, 2, Int>,
    /// The next token at each position.
    pub targets: Tensor<B, 2, Int>,
    /// The position whose output predicts each response token (0 where padded).
    pub positions: Tensor<B, 2, Int>,
    /// 1 on response tokens, 0 on padding.
    pub mask: Tensor<B, 2>,
    /// Response length of each row.
    pub response_lens: Vec<usize>,
}

impl<B: Backend> ResponseBatch<B> {
    /// Stacks `(prompt, response)` rows; every prompt and response must be non-empty and
    /// each row fit in `max_len` tokens.
    pub fn new(
        rows: &[(&[u32], &[u32])],
        max_len: usize,
        device: &B::Device,
    ) -> Result<Self, RlhfError> {
        if rows.is_empty() {
            return Err(RlhfError::Config("an empty batch of responses".into()));
        }
        let mut seq_len = 0;
        let mut resp_len = 0;
        for (i, (p, r)) in rows.iter().enumerate() {
            if p.is_empty() || r.is_empty() {
                return Err(RlhfError::Config(format!(
                    "row {i} has an empty prompt or response"
                )));
            }
            if p.len() + r.len() > max_len {
                return Err(RlhfError::Config(format!(
                    "row {i} is {} tokens, more than the model's {max_len} positions",
                    p.len() + r.len()
                )));
            }
            seq_len = seq_len.max(p.len() + r.len());
            resp_len = resp_len.max(r.len());
        }
        let batch = rows.len();
        let mut tokens = Vec::with_capacity(batch * seq_len);
        let mut targets = Vec::with_capacity(batch * seq_len);
        let mut positions = Vec::with_capacity(batch * resp_len);
        let mut mask = Vec::with_capacity(batch * resp_len);
        for (p, r) in rows {
            let row: Vec<i64> = p.iter().chain(r.iter()).map(|&t| i64::from(t)).collect();
            let pad = seq_len - row.len();
            targets.extend(row.iter().skip(1).copied());
            targets.extend(std::iter::repeat_n(0, pad + 1));
            tokens.extend(row);
            tokens.extend(std::iter::repeat_n(0, pad));
            for j in 0..resp_len {
                let real = j < r.len();
                positions.push(if real { (p.len() + j - 1) as i64 } else { 0 });
                mask.push(if real { 1.0f32 } else { 0.0 });
            }
        }
        Ok(Self {
            tokens: Tensor::from_data(TensorData::new(tokens, [batch, seq_len]), device),
            targets: Tensor::from_data(TensorData::new(targets, [batch, seq_len]), device),
            positions: Tensor::from_data(TensorData::new(positions, [batch, resp_len]), device),
            mask: Tensor::from_data(TensorData::new(mask, [batch, resp_len]), device),
            response_lens: rows.iter().map(|(_, r)| r.len()).collect(),
        })
    }

    /// Reads `[batch, seq_len]` per-position values at the response positions.
    ///
    /// # Shapes
    ///
    /// - per_position: `[batch, seq_len]`
    /// - output: `[batch, response_len]`
    pub fn at_responses(&self, per_position: Tensor<B, 2>) -> Tensor<B, 2> {
        per_position.gather(1, self.positions.clone())
    }

    /// `log p(token)` of each response token under `logits`, and the entropy of the
    /// distribution it was drawn from (no gradient is needed through the entropy).
    ///
    /// # Shapes
    ///
    /// - logits: `[batch, seq_len, vocab]`
    /// - output: `[batch, response_len]` twice
    pub fn logprobs_and_entropy(&self, logits: Tensor<B, 3>) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let [batch, seq_len, _] = logits.dims();
        let logp = log_softmax(logits, 2);
        let entropy = logp
            .clone()
            .detach()
            .exp()
            .mul(logp.clone().detach())
            .sum_dim(2)
            .neg()
            .reshape([batch, seq_len]);
        let token = logp
            .gather(2, self.targets.clone().unsqueeze_dim(2))
            .reshape([batch, seq_len]);
        (self.at_responses(token), self.at_responses(entropy))
    }

    /// `log p(token)` of each response token under `model`.
    ///
    /// # Shapes
    ///
    /// - output: `[batch, response_len]`
    pub fn logprobs(&self, model: &Llama<B>) -> Tensor<B, 2> {
        self.logprobs_and_entropy(model.forward(self.tokens.clone()))
            .0
    }
}

/// The response tokens' log-probabilities of each row under `model`, computed
/// `batch_size` rows at a time (no gradients).
pub fn response_logprobs<B: Backend>(
    model: &Llama<B>,
    rows: &[(&[u32], &[u32])],
    batch_size: usize,
) -> Result<Vec<Vec<f64>>, RlhfError> {
    let device = model.tok_embeddings.weight.device();
    let max = model.rope.max_positions();
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(batch_size.max(1)) {
        let batch = ResponseBatch::<B>::new(chunk, max, &device)?;
        let logp = batch.logprobs(model);
        out.extend(rows_of(logp, &batch.response_lens)?);
    }
    Ok(out)
}

/// The first `lens[b]` values of each row of a `[batch, len]` tensor.
pub fn rows_of<B: Backend>(
    values: Tensor<B, 2>,
    lens: &[usize],
) -> Result<Vec<Vec<f64>>, RlhfError> {
    let [_, width] = values.dims();
    let flat = values
        .into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .map_err(|e| RlhfError::Config(format!("cannot read values back: {e:?}")))?;
    Ok(lens
        .iter()
        .enumerate()
        .map(|(b, &n)| flat[b * width..b * width + n].to_vec())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use llama2::LlamaConfig;

    type B = NdArray<f32, i64>;

    #[test]
    fn batched_logprobs_equal_one_row_at_a_time_and_a_plain_forward() {
        let device = Default::default();
        let mut c = LlamaConfig::tiny_15m();
        c.dim = 16;
        c.n_layers = 1;
        c.n_heads = 2;
        c.n_kv_heads = 1;
        c.vocab_size = 40;
        c.max_seq_len = 32;
        let model = c.init::<B>(&device);
        let rows: Vec<(Vec<u32>, Vec<u32>)> = vec![
            (vec![1, 5, 9], vec![3, 4]),
            (vec![1, 7], vec![8, 2, 6, 11]),
            (vec![1, 2, 3, 4, 5], vec![30]),
        ];
        let refs: Vec<(&[u32], &[u32])> = rows
            .iter()
            .map(|(p, r)| (p.as_slice(), r.as_slice()))
            .collect();
        let batched = response_logprobs(&model, &refs, 8).unwrap();
        let single = response_logprobs(&model, &refs, 1).unwrap();
        assert_eq!(batched.len(), 3);
        assert_eq!(single.len(), 3);
        for ((b, s), (_, r)) in batched.iter().zip(&single).zip(&rows) {
            assert_eq!(b.len(), r.len());
            assert_eq!(s.len(), r.len());
            for (x, y) in b.iter().zip(s) {
                assert!((x - y).abs() < 1e-5, "{x} vs {y}");
            }
        }
        // Row 1 by hand: log_softmax of the logits at positions 1..=4 at the next tokens.
        let (p, r) = &rows[1];
        let seq: Vec<i64> = p.iter().chain(r).map(|&t| i64::from(t)).collect();
        let len = seq.len();
        let logits = model.forward(Tensor::from_data(
            TensorData::new(seq.clone(), [1, len]),
            &device,
        ));
        let logp = log_softmax(logits, 2).into_data().to_vec::<f32>().unwrap();
        for (j, &token) in r.iter().enumerate() {
            let pos = p.len() + j - 1;
            let want = f64::from(logp[pos * 40 + token as usize]);
            assert!((batched[1][j] - want).abs() < 1e-5);
        }
        assert!(ResponseBatch::<B>::new(&[(&[1], &[])], 32, &device).is_err());
        assert!(ResponseBatch::<B>::new(&[(&[1; 30], &[2; 3])], 32, &device).is_err());
    }
}
