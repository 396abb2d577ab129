//! The modules PPO trains: the policy and the value model, one module so that one
//! optimizer step updates both (TRL's `PolicyAndValueWrapper`), with burn-train's
//! [`TrainStep`] giving the clipped PPO losses of a minibatch of rollout tokens.

use burn::module::Module;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData, Transaction};
use burn::train::{InferenceStep, ItemLazy, TrainOutput, TrainStep};
use llama2::Llama;
use llama2::lora::LoraConfig;
use llama2::train::{StepOutput, Trainable};
use llama2_reward::RewardModel;

use super::loss::{PpoLossConfig, PpoTokens};
use crate::rollout::ResponseBatch;

/// Names of the PPO metrics on the dashboard and in the logs.
pub const METRICS: &[&str] = &[
    "Policy Loss",
    "Value Loss",
    "Clip Fraction",
    "Value Clip Fraction",
    "Approx KL",
    "Entropy",
];

/// The policy and its value model (a reward model's trunk and head read at every token).
#[derive(Module, Debug)]
pub struct PolicyAndValue<B: Backend> {
    /// The language model being optimised.
    pub policy: Llama<B>,
    /// The critic, initialised from the reward model.
    pub value: RewardModel<B>,
    /// The losses' settings (not saved).
    pub losses: PpoLossConfig,
}

/// One response of a rollout with what the update needs, per response token.
#[derive(Clone, Debug, PartialEq)]
pub struct RolloutItem {
    /// The prompt's tokens.
    pub prompt: Vec<u32>,
    /// The response's tokens (EOS last when it ended).
    pub response: Vec<u32>,
    /// `log π_old` of each response token.
    pub logprobs: Vec<f64>,
    /// The value model's estimates at rollout time.
    pub values: Vec<f64>,
    /// Advantages.
    pub advantages: Vec<f64>,
    /// Value targets.
    pub returns: Vec<f64>,
}

/// A minibatch of rollout items.
///
/// # Shapes
///
/// - per-token tensors: `[batch, response_len]`, 0 past each response
#[derive(Clone, Debug)]
pub struct PpoBatch<B: Backend> {
    /// Prompt ‖ response rows.
    pub rows: ResponseBatch<B>,
    /// `log π_old`.
    pub old_logprobs: Tensor<B, 2>,
    /// `V_old`.
    pub old_values: Tensor<B, 2>,
    /// Advantages.
    pub advantages: Tensor<B, 2>,
    /// Returns.
    pub returns: Tensor<B, 2>,
    /// Response tokens of the whole step.
    pub denominator: f64,
}

impl<B: Backend> PpoBatch<B> {
    /// Stacks items; `max_len` is the policy's context.
    pub fn new(
        items: &[RolloutItem],
        max_len: usize,
        denominator: f64,
        device: &B::Device,
    ) -> Self {
        let rows: Vec<(&[u32], &[u32])> = items
            .iter()
            .map(|i| (i.prompt.as_slice(), i.response.as_slice()))
            .collect();
        let rows = ResponseBatch::new(&rows, max_len, device)
            .expect("rollout rows are checked when they are made");
        let [batch, width] = rows.mask.dims();
        let tensor = |f: &dyn Fn(&RolloutItem) -> &[f64]| {
            let mut v = Vec::with_capacity(batch * width);
            for item in items {
                let x = f(item);
                v.extend(x.iter().map(|&x| x as f32));
                v.extend(std::iter::repeat_n(0.0f32, width - x.len()));
            }
            Tensor::<B, 2>::from_data(TensorData::new(v, [batch, width]), device)
        };
        Self {
            old_logprobs: tensor(&|i| &i.logprobs),
            old_values: tensor(&|i| &i.values),
            advantages: tensor(&|i| &i.advantages),
            returns: tensor(&|i| &i.returns),
            rows,
            denominator,
        }
    }
}

/// The losses of a minibatch, read back lazily.
#[derive(Clone, Debug)]
pub struct PpoOutput<B: Backend> {
    /// `[1]` each: total, policy, value loss (already divided by the step's tokens);
    /// clipped token counts; `Σ ½ Δlog π²`; `Σ` entropy.
    pub stats: [Tensor<B, 1>; 7],
    /// Response tokens.
    pub n_tokens: usize,
    /// Tokens fed.
    pub n_inputs: usize,
}

/// [`PpoOutput`] on the host.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PpoOutputSync {
    /// Total loss.
    pub loss: f64,
    /// Policy loss.
    pub policy: f64,
    /// Value loss.
    pub value: f64,
    /// Tokens whose surrogate was clipped.
    pub policy_clipped: f64,
    /// Tokens whose value was clipped.
    pub value_clipped: f64,
    /// `Σ ½ (log π − log π_old)²`.
    pub approx_kl: f64,
    /// `Σ` entropy.
    pub entropy: f64,
    /// Response tokens.
    pub n_tokens: usize,
    /// Tokens fed.
    pub n_inputs: usize,
}

impl<B: Backend> ItemLazy for PpoOutput<B> {
    type ItemSync = PpoOutputSync;

    fn sync(self) -> PpoOutputSync {
        let mut t = Transaction::default();
        for s in self.stats {
            t = t.register(s);
        }
        let v: Vec<f64> = t
            .execute()
            .into_iter()
            .map(|d| {
                d.convert::<f64>()
                    .to_vec::<f64>()
                    .ok()
                    .and_then(|v| v.first().copied())
                    .unwrap_or(f64::NAN)
            })
            .collect();
        PpoOutputSync {
            loss: v[0],
            policy: v[1],
            value: v[2],
            policy_clipped: v[3],
            value_clipped: v[4],
            approx_kl: v[5],
            entropy: v[6],
            n_tokens: self.n_tokens,
            n_inputs: self.n_inputs,
        }
    }
}

impl StepOutput for PpoOutputSync {
    fn loss(&self) -> f64 {
        self.loss
    }

    fn n_inputs(&self) -> usize {
        self.n_inputs
    }

    fn merge(&mut self, o: Self) {
        self.loss += o.loss;
        self.policy += o.policy;
        self.value += o.value;
        self.policy_clipped += o.policy_clipped;
        self.value_clipped += o.value_clipped;
        self.approx_kl += o.approx_kl;
        self.entropy += o.entropy;
        self.n_tokens += o.n_tokens;
        self.n_inputs += o.n_inputs;
    }

    fn metrics(&self) -> Vec<(&'static str, f64)> {
        let n = self.n_tokens.max(1) as f64;
        vec![
            (METRICS[0], self.policy),
            (METRICS[1], self.value),
            (METRICS[2], self.policy_clipped / n),
            (METRICS[3], self.value_clipped / n),
            (METRICS[4], self.approx_kl / n),
            (METRICS[5], self.entropy / n),
        ]
    }
}

impl<B: Backend> PolicyAndValue<B> {
    /// The PPO losses of a minibatch.
    pub fn ppo_loss(&self, batch: PpoBatch<B>) -> PpoOutput<B> {
        let [rows, seq_len] = batch.rows.tokens.dims();
        let n_tokens = batch.rows.response_lens.iter().sum();
        let logits = self.policy.forward(batch.rows.tokens.clone());
        let (logprobs, entropy) = batch.rows.logprobs_and_entropy(logits);
        let values = batch
            .rows
            .at_responses(self.value.values(batch.rows.tokens.clone()));
        let mask = batch.rows.mask.clone();
        let l = self.losses.forward(
            PpoTokens {
                logprobs,
                old_logprobs: batch.old_logprobs,
                advantages: batch.advantages,
                values,
                old_values: batch.old_values,
                returns: batch.returns,
                mask: mask.clone(),
            },
            batch.denominator,
        );
        let entropy = entropy.mul(mask).sum();
        PpoOutput {
            stats: [
                l.total,
                l.policy.detach(),
                l.value.detach(),
                l.policy_clipped,
                l.value_clipped,
                l.approx_kl,
                entropy,
            ],
            n_tokens,
            n_inputs: rows * seq_len,
        }
    }
}

impl<B: AutodiffBackend> TrainStep for PolicyAndValue<B> {
    type Input = PpoBatch<B>;
    type Output = PpoOutput<B>;

    fn step(&self, batch: PpoBatch<B>) -> TrainOutput<PpoOutput<B>> {
        let mut output = self.ppo_loss(batch);
        let grads = output.stats[0].backward();
        output.stats[0] = output.stats[0].clone().detach();
        TrainOutput::new(self, grads, output)
    }
}

impl<B: Backend> InferenceStep for PolicyAndValue<B> {
    type Input = PpoBatch<B>;
    type Output = PpoOutput<B>;

    fn step(&self, batch: PpoBatch<B>) -> PpoOutput<B> {
        self.ppo_loss(batch)
    }
}

/// PPO minibatches on the training engine: the loss averages over the step's response
/// tokens; a checkpoint holds the policy and the value model (with LoRA on the policy,
/// its adapters and the whole value model).
impl<B: AutodiffBackend> Trainable<B> for PolicyAndValue<B> {
    type Item = RolloutItem;

    const METRICS: &'static [&'static str] = METRICS;
    const PERPLEXITY: bool = false;

    fn item_weight(item: &RolloutItem) -> usize {
        item.response.len()
    }

    fn train_batch(
        &self,
        items: &[RolloutItem],
        denominator: f64,
        device: &B::Device,
    ) -> PpoBatch<B> {
        PpoBatch::new(items, self.policy.config.max_seq_len, denominator, device)
    }

    fn valid_batch(
        &self,
        items: &[RolloutItem],
        denominator: f64,
        device: &burn::tensor::Device<B::InnerBackend>,
    ) -> PpoBatch<B::InnerBackend> {
        PpoBatch::new(items, self.policy.config.max_seq_len, denominator, device)
    }

    fn lora(&self) -> Option<&LoraConfig> {
        None
    }
}
