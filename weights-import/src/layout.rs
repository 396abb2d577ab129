//! Which tensors a Llama 2 checkpoint holds, their shapes, how Meta's model-parallel shards
//! split them, and how Hugging Face names and permutes them.

use llama2::LlamaConfig;

/// How fairscale's model-parallel layers split a tensor across Meta's shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardSplit {
    /// `ColumnParallelLinear` (`wq wk wv w1 w3 output`): concatenated on dim 0.
    Rows,
    /// `RowParallelLinear` (`wo w2`) and `ParallelEmbedding` (`tok_embeddings`): concatenated on dim 1.
    Columns,
    /// Norm weights: the same full tensor in every shard.
    Replicated,
}

/// Which rotary permutation Hugging Face applied to a projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HfPermute {
    /// Not permuted.
    None,
    /// Query or key projection with this many heads.
    Heads(usize),
}

/// One parameter of the model, described in Meta's (PyTorch) layout.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// Meta's name, which is also the Burn module path.
    pub name: String,
    /// Hugging Face's name.
    pub hf_name: String,
    /// Shape in PyTorch layout (`[out, in]` for linear weights).
    pub shape: Vec<usize>,
    /// Whether this is a linear weight (stored transposed, `[in, out]`, in Burn).
    pub linear: bool,
    /// How Meta's shards split it.
    pub split: ShardSplit,
    /// Hugging Face's rotary permutation of its rows.
    pub hf_permute: HfPermute,
}

impl ParamSpec {
    /// Shape of the tensor in the Burn module.
    pub fn burn_shape(&self) -> Vec<usize> {
        if self.linear {
            vec![self.shape[1], self.shape[0]]
        } else {
            self.shape.clone()
        }
    }

    /// Shape of one of `shards` Meta shards.
    pub fn shard_shape(&self, shards: usize) -> Vec<usize> {
        let mut shape = self.shape.clone();
        match self.split {
            ShardSplit::Rows => shape[0] /= shards,
            ShardSplit::Columns => shape[1] /= shards,
            ShardSplit::Replicated => {}
        }
        shape
    }
}

/// Every parameter of a model with this configuration, in module order.
pub fn param_specs(config: &LlamaConfig) -> Vec<ParamSpec> {
    let dim = config.dim;
    let q_dim = config.n_heads * config.head_dim();
    let kv_dim = config.n_kv_heads * config.head_dim();
    let hidden = config.ffn_hidden_dim();
    let spec = |name: String, hf_name: String, shape: Vec<usize>, split, hf_permute| ParamSpec {
        linear: shape.len() == 2 && !name.starts_with("tok_embeddings"),
        name,
        hf_name,
        shape,
        split,
        hf_permute,
    };
    use HfPermute::{Heads, None as Plain};
    use ShardSplit::{Columns, Replicated, Rows};

    let mut specs = vec![spec(
        "tok_embeddings.weight".into(),
        "model.embed_tokens.weight".into(),
        vec![config.vocab_size, dim],
        Columns,
        Plain,
    )];
    for i in 0..config.n_layers {
        let m = |s: &str| format!("layers.{i}.{s}.weight");
        let h = |s: &str| format!("model.layers.{i}.{s}.weight");
        specs.extend([
            spec(
                m("attention.wq"),
                h("self_attn.q_proj"),
                vec![q_dim, dim],
                Rows,
                Heads(config.n_heads),
            ),
            spec(
                m("attention.wk"),
                h("self_attn.k_proj"),
                vec![kv_dim, dim],
                Rows,
                Heads(config.n_kv_heads),
            ),
            spec(
                m("attention.wv"),
                h("self_attn.v_proj"),
                vec![kv_dim, dim],
                Rows,
                Plain,
            ),
            spec(
                m("attention.wo"),
                h("self_attn.o_proj"),
                vec![dim, q_dim],
                Columns,
                Plain,
            ),
            spec(
                m("feed_forward.w1"),
                h("mlp.gate_proj"),
                vec![hidden, dim],
                Rows,
                Plain,
            ),
            spec(
                m("feed_forward.w2"),
                h("mlp.down_proj"),
                vec![dim, hidden],
                Columns,
                Plain,
            ),
            spec(
                m("feed_forward.w3"),
                h("mlp.up_proj"),
                vec![hidden, dim],
                Rows,
                Plain,
            ),
            spec(
                m("attention_norm"),
                h("input_layernorm"),
                vec![dim],
                Replicated,
                Plain,
            ),
            spec(
                m("ffn_norm"),
                h("post_attention_layernorm"),
                vec![dim],
                Replicated,
                Plain,
            ),
        ]);
    }
    specs.push(spec(
        "norm.weight".into(),
        "model.norm.weight".into(),
        vec![dim],
        Replicated,
        Plain,
    ));
    specs.push(spec(
        "output.weight".into(),
        "lm_head.weight".into(),
        vec![config.vocab_size, dim],
        Rows,
        Plain,
    ));
    specs
}

/// Concatenates equally shaped 2-D shards along `dim` (0 or 1).
pub fn concat_2d(parts: &[Vec<f32>], rows: usize, cols: usize, dim: usize) -> Vec<f32> {
    if dim == 0 || parts.len() == 1 {
        return parts.concat();
    }
    let mut out = Vec::with_capacity(parts.len() * rows * cols);
    for r in 0..rows {
        for part in parts {
            out.extend_from_slice(&part[r * cols..(r + 1) * cols]);
        }
    }
    out
}

/// Transposes a row-major `[rows, cols]` matrix.
pub fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    const TILE: usize = 32;
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    out[c * rows + r] = values[r * cols + c];
                }
            }
        }
    }
    out
}

/// Row order Hugging Face gives a query/key projection of `heads` heads: within each head,
/// Meta's interleaved pairs `(2j, 2j+1)` become halves `(j, j + head_dim/2)`.
///
/// Returns, for each Hugging Face row, the Meta row it holds.
fn hf_rows_from_meta(rows: usize, heads: usize) -> Vec<usize> {
    let head_dim = rows / heads;
    let half = head_dim / 2;
    let mut map = vec![0; rows];
    for h in 0..heads {
        for j in 0..half {
            for c in 0..2 {
                map[h * head_dim + c * half + j] = h * head_dim + 2 * j + c;
            }
        }
    }
    map
}

/// Undoes Hugging Face's rotary permutation of a `[rows, cols]` projection (HF → Meta).
pub fn unpermute_hf(values: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for (hf_row, meta_row) in hf_rows_from_meta(rows, heads).into_iter().enumerate() {
        out[meta_row * cols..(meta_row + 1) * cols]
            .copy_from_slice(&values[hf_row * cols..(hf_row + 1) * cols]);
    }
    out
}

/// Applies Hugging Face's rotary permutation to a `[rows, cols]` projection (Meta → HF), as
/// transformers' `convert_llama_weights_to_hf.permute`.
pub fn permute_hf(values: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for (hf_row, meta_row) in hf_rows_from_meta(rows, heads).into_iter().enumerate() {
        out[hf_row * cols..(hf_row + 1) * cols]
            .copy_from_slice(&values[meta_row * cols..(meta_row + 1) * cols]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_cover_every_parameter() {
        let config = LlamaConfig::new(64, 2, 4, 2, 512).with_multiple_of(32);
        let specs = param_specs(&config);
        assert_eq!(specs.len(), 2 + 9 * 2 + 1);
        let total: usize = specs
            .iter()
            .map(|s| s.shape.iter().product::<usize>())
            .sum();
        assert_eq!(total, config.num_params());
        let wk = specs
            .iter()
            .find(|s| s.name == "layers.1.attention.wk.weight")
            .unwrap();
        assert_eq!(wk.shape, vec![32, 64]);
        assert_eq!(wk.burn_shape(), vec![64, 32]);
        assert_eq!(wk.shard_shape(2), vec![16, 64]);
    }

    #[test]
    fn permutation_matches_transformers_formula() {
        // permute(w) = w.view(heads, rows/heads/2, 2, cols).transpose(1, 2).reshape(rows, cols)
        let (heads, rows, cols) = (2, 8, 3);
        let w: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
        let mut expected = vec![0.0; rows * cols];
        let half = rows / heads / 2;
        for h in 0..heads {
            for j in 0..half {
                for c in 0..2 {
                    for k in 0..cols {
                        // source index [h, j, c, k] lands at [h, c, j, k]
                        let src = ((h * half + j) * 2 + c) * cols + k;
                        let dst = ((h * 2 + c) * half + j) * cols + k;
                        expected[dst] = w[src];
                    }
                }
            }
        }
        let permuted = permute_hf(&w, rows, cols, heads);
        assert_eq!(permuted, expected);
        assert_eq!(unpermute_hf(&permuted, rows, cols, heads), w);
    }

    #[test]
    fn concatenates_columns() {
        let a = vec![1.0, 2.0, 3.0, 4.0];
        let b = vec![5.0, 6.0, 7.0, 8.0];
        assert_eq!(
            concat_2d(&[a.clone(), b.clone()], 2, 2, 1),
            vec![1.0, 2.0, 5.0, 6.0, 3.0, 4.0, 7.0, 8.0]
        );
        assert_eq!(
            concat_2d(&[a, b], 2, 2, 0),
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
        );
        assert_eq!(
            transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }
}
