#!/usr/bin/env python3
"""Reference data for the PPO / RLHF math (KL estimators, per-token rewards, GAE, advantage
whitening, clipped policy and value losses, entropy).

Writes tests/data/rlhf/ppo_reference.json.

Float64 PyTorch transcriptions of these sources (read from the repositories themselves):

  OpenRLHF/OpenRLHF @ d90b3d1f2008a4af306a4272503c8e972cdf8e1f (tag v0.8.6, "support
  log_ratio.clamp"), openrlhf/models/utils.py: compute_approx_kl. Unchanged in its math up
  to 3c3be6234e0cb353e76bb8019947db9dfe99fca7 (HEAD read, Aug 2026; same file).
    log_ratio = log_probs.float() - log_probs_base.float()
    k1: log_ratio;  k2: log_ratio**2 / 2.0;  k3: log_ratio = -log_ratio; log_ratio.exp() - 1 - log_ratio
    then, for every estimator: log_ratio.clamp(min=-10, max=10)
  (the source casts to float32 with .float(); here everything stays float64).

  huggingface/trl @ accf7383a33c618a2edc7205107120b5f32e28a3 (tag v0.19.1),
  trl/trainer/ppo_trainer.py, PPOTrainer.train (the former PPOv2Trainer; the same code is
  trl/trainer/ppov2_trainer.py in v0.11.0 and trl/trainer/ppo_trainer.py from v0.12.0 on;
  kl_estimator "k1"/"k3" since v0.17.0), with masked_mean / masked_var / masked_whiten from
  trl/core.py (same tag). This is "expected" in the JSON. Its conventions, which differ from
  a plain action-mask formulation:
    * sequence_length = index of the last response token; padding_mask = idx > seq_len
      (so ~padding_mask is the action mask); padding_mask_p1 = idx > seq_len + 1, i.e. the
      VALUE mask ~padding_mask_p1 keeps ONE EXTRA position, the first padding token.
    * logprobs and ref_logprobs are masked_fill'ed with INVALID_LOGPROB = 1.0 at padding, so
      the per-token kl (k1: logprobs - ref_logprobs; k3: exp(logr) - 1 - logr with
      logr = ref - logprobs; NO clamp in TRL) is exactly 0 there.
    * values are masked_fill'ed with 0 only where padding_mask_p1: the value at the first
      padding position is kept.
    * the score goes to actual_end = seq_len + 1 if seq_len + 1 < T else seq_len, i.e. to
      the first padding position, or to the last token when the response fills all T.
      missing_eos_penalty: scores[~contain_eos_token] -= missing_eos_penalty, before that.
    * rewards are masked_fill'ed with padding_mask_p1 only when whiten_rewards (default off;
      not used here). Without it they are already 0 past actual_end.
    * GAE over all T positions, returns = advantages + values,
      advantages = masked_whiten(advantages, ~padding_mask) then masked_fill(padding_mask, 0).
    * new_logprobs masked_fill'ed with INVALID_LOGPROB at padding; vpred masked_fill'ed with
      0 where padding_mask_p1.
    * vf_loss and vf_clipfrac: masked_mean over ~padding_mask_p1 (the value mask);
      pg_loss and pg_clipfrac: masked_mean over ~padding_mask (the action mask).
    * approxkl = 0.5 * (logprobs_diff**2).mean(): a plain mean over all B*T positions, the
      padding positions contributing 0 (both logprobs are INVALID_LOGPROB there).
    * entropy = logsumexp(logits) - sum(softmax(logits) * logits) at every position, and the
      logged statistic is entropy.mean(): a plain mean over all B*T positions, padding
      included. (TRL divides the logits by temperature + 1e-7 first; the logits here are taken
      as already scaled, no division.)

  huggingface/trl @ e4935e13fcda106485ed5c85678c6f0bb0d1d10b (tag v0.11.0),
  trl/trainer/ppo_trainer.py, the legacy PPOTrainer: compute_rewards, compute_advantages,
  loss; trl/core.py: masked_mean, masked_var, masked_whiten, entropy_from_logits. This is
  "expected_action_mask" in the JSON: everything over the action mask only.
    * kl = logprob - ref_logprob ("kl" penalty = k1); score added at mask.nonzero()[-1],
      the last action token; values = values * mask, rewards = rewards * mask before GAE.
    * advantages = masked_whiten(advantages, mask); the legacy code does NOT zero the
      padding advantages afterwards; here they are set to 0 (as the newer trainer does;
      they never reach a loss).
    * vf/pg losses, clipfracs, approxkl = 0.5 * masked_mean(diff**2, mask) and
      entropy = masked_mean(entropy_from_logits(logits), mask), all over the action mask.
    * the legacy trainer has neither missing_eos_penalty nor k3; both are applied here
      exactly as the newer trainer does (score -= penalty; TRL's unclamped k3).

masked_var uses Bessel's correction (n / (n - 1)); with a single unmasked token that is
0 * inf = NaN in TRL, so the single-token case has whitened_advantages, pg_loss and
pg_clipfrac = null (pg_loss_unwhitened / pg_clipfrac_unwhitened, computed with the raw GAE
advantages, are given in every case).

masked_var's Bessel factor: TRL divides two integer tensors (mask.sum()), which gives a
float32 factor (~3e-8 relative error); here it is float64.

Inputs at masked-out positions hold garbage (positive "logprobs", values of magnitude 3-6,
large logits), except values/new_values at the first padding position, which TRL's
PPOTrainer uses (value mask) and which are therefore moderate. kl_k1/kl_k2/kl_k3 (OpenRLHF,
clamped) and entropy are given at every position, garbage included.

JSON: {"source": {...}, "cases": [case, ...]}; case = name, kl_coef, gamma, lam, cliprange,
cliprange_value, missing_eos_penalty (null = off), action_mask (B x T, right padded),
has_eos (B), scores (B, before the EOS penalty), logprobs, ref_logprobs, values,
new_logprobs, new_values (B x T), logits (B x T x 5), and
  expected (TRL v0.19.1 PPOTrainer): kl_k1, kl_k2, kl_k3, rewards_k1, rewards_k3,
    value_mask (B x T, ~padding_mask_p1), score_index (B, actual_end), advantages (raw
    GAE), returns, whitened_advantages, pg_loss, pg_clipfrac, pg_loss_unwhitened,
    pg_clipfrac_unwhitened, approxkl, vf_loss, vf_clipfrac, entropy (B x T), entropy_mean
  expected_action_mask (legacy TRL, action mask only): the same keys except kl_k*,
    value_mask, score_index and entropy (identical to the above).

Deterministic: seeded torch.Generator, inputs rounded to 4 decimals before use.
Usage: .venv/bin/python scripts/gen_rlhf_reference.py
"""

import json
import math
import os
import sys

import torch

sys.dont_write_bytecode = True
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "rlhf", "ppo_reference.json")
V = 5
INVALID_LOGPROB = 1.0  # trl/trainer/ppo_trainer.py

SOURCE = {
    "compute_approx_kl": "OpenRLHF/OpenRLHF@d90b3d1f2008a4af306a4272503c8e972cdf8e1f:openrlhf/models/utils.py "
    "(v0.8.6; same math at 3c3be6234e0cb353e76bb8019947db9dfe99fca7)",
    "expected": "huggingface/trl@accf7383a33c618a2edc7205107120b5f32e28a3:trl/trainer/ppo_trainer.py "
    "(v0.19.1, PPOTrainer.train)",
    "masked_mean/masked_var/masked_whiten": "huggingface/trl@accf7383a33c618a2edc7205107120b5f32e28a3:trl/core.py (v0.19.1)",
    "expected_action_mask": "huggingface/trl@e4935e13fcda106485ed5c85678c6f0bb0d1d10b:trl/trainer/ppo_trainer.py "
    "(v0.11.0 legacy PPOTrainer: compute_rewards, compute_advantages, loss)",
    "entropy_from_logits": "huggingface/trl@e4935e13fcda106485ed5c85678c6f0bb0d1d10b:trl/core.py (v0.11.0); "
    "inline in trl/trainer/ppo_trainer.py at v0.19.1",
}


# ---------------------------------------------------------------- OpenRLHF
def compute_approx_kl(log_probs, log_probs_base, kl_estimator="k1"):
    log_ratio = log_probs - log_probs_base  # source: .float() on both (float32); float64 here
    if kl_estimator == "k1":
        pass
    elif kl_estimator == "k2":
        log_ratio = log_ratio**2 / 2.0
    elif kl_estimator == "k3":
        log_ratio = -log_ratio
        log_ratio = log_ratio.exp() - 1 - log_ratio
    else:
        raise ValueError(kl_estimator)
    return log_ratio.clamp(min=-10, max=10)


# ---------------------------------------------------------------- trl/core.py
def masked_mean(values, mask):
    return (values * mask).sum() / mask.sum()


def masked_var(values, mask, unbiased=True):
    mean = masked_mean(values, mask)
    centered_values = values - mean
    variance = masked_mean(centered_values**2, mask)
    if unbiased:
        # TRL: mask_sum = mask.sum(), an integer tensor, so mask_sum / (mask_sum - 1) is computed
        # in torch's default float32 (about 3e-8 relative error); float64 here
        mask_sum = mask.sum().to(values.dtype)
        if mask_sum == 0:
            raise ValueError("mask sum is zero")
        # mask_sum == 1: division by zero (inf), 0 * inf = NaN, as in TRL
        bessel_correction = mask_sum / (mask_sum - 1)
        variance = variance * bessel_correction
    return variance


def masked_whiten(values, mask, shift_mean=True):
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened += mean
    return whitened


def entropy_from_logits(logits):
    pd = torch.nn.functional.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - torch.sum(pd * logits, dim=-1)


def gae(rewards, values, gamma, lam):
    lastgaelam = 0
    advantages_reversed = []
    gen_length = rewards.shape[1]
    for t in reversed(range(gen_length)):
        nextvalues = values[:, t + 1] if t < gen_length - 1 else 0.0
        delta = rewards[:, t] + gamma * nextvalues - values[:, t]
        lastgaelam = delta + gamma * lam * lastgaelam
        advantages_reversed.append(lastgaelam)
    advantages = torch.stack(advantages_reversed[::-1], dim=1)
    returns = advantages + values
    return advantages, returns


def pg_terms(advantages, new_logprobs, old_logprobs, mask, cliprange):
    logprobs_diff = new_logprobs - old_logprobs
    ratio = torch.exp(logprobs_diff)
    pg_losses = -advantages * ratio
    pg_losses2 = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    pg_loss = masked_mean(torch.max(pg_losses, pg_losses2), mask)
    pg_clipfrac = masked_mean((pg_losses2 > pg_losses).double(), mask)
    return pg_loss, pg_clipfrac


def vf_terms(vpred, values, returns, mask, cliprange_value):
    vpredclipped = torch.clamp(vpred, values - cliprange_value, values + cliprange_value)
    vf_losses1 = torch.square(vpred - returns)
    vf_losses2 = torch.square(vpredclipped - returns)
    vf_loss = 0.5 * masked_mean(torch.max(vf_losses1, vf_losses2), mask)
    vf_clipfrac = masked_mean((vf_losses2 > vf_losses1).double(), mask)
    return vf_loss, vf_clipfrac


def finite_or_none(t):
    return t if bool(torch.isfinite(t).all()) else None


# ---------------------------------------------------------------- TRL v0.19.1 PPOTrainer
def trl_ppo_trainer(c, x):
    action_mask = x["action_mask"]
    B, T = action_mask.shape
    # sequence_length = first_true_indices(postprocessed_response == pad) - 1
    sequence_lengths = action_mask.sum(1).long() - 1
    scores = x["scores"].clone()
    contain_eos_token = x["has_eos"]
    if c["missing_eos_penalty"] is not None:
        scores[~contain_eos_token] -= c["missing_eos_penalty"]

    response_idxs = torch.arange(T).repeat(B, 1)
    padding_mask = response_idxs > sequence_lengths.unsqueeze(1)
    logprobs = torch.masked_fill(x["logprobs"], padding_mask, INVALID_LOGPROB)
    ref_logprobs = torch.masked_fill(x["ref_logprobs"], padding_mask, INVALID_LOGPROB)
    sequence_lengths_p1 = sequence_lengths + 1
    padding_mask_p1 = response_idxs > (sequence_lengths_p1.unsqueeze(1))
    values = torch.masked_fill(x["values"], padding_mask_p1, 0)

    logr = ref_logprobs - logprobs
    out = {}
    actual_start = torch.arange(B)
    actual_end = torch.where(sequence_lengths_p1 < T, sequence_lengths_p1, sequence_lengths)
    for est in ("k1", "k3"):
        kl = -logr if est == "k1" else (logr.exp() - 1) - logr
        non_score_reward = -c["kl_coef"] * kl
        rewards = non_score_reward.clone()
        rewards[(actual_start, actual_end)] += scores  # TRL: rewards[[actual_start, actual_end]] += scores
        out["rewards_" + est] = rewards
    rewards = out["rewards_k1"]

    advantages, returns = gae(rewards, values, c["gamma"], c["lam"])
    raw_advantages = advantages
    whitened = masked_whiten(advantages, ~padding_mask)
    whitened = torch.masked_fill(whitened, padding_mask, 0)

    new_logprobs = torch.masked_fill(x["new_logprobs"], padding_mask, INVALID_LOGPROB)
    vpred = torch.masked_fill(x["new_values"], padding_mask_p1, 0)
    vf_loss, vf_clipfrac = vf_terms(vpred, values, returns, ~padding_mask_p1, c["cliprange_value"])
    w = finite_or_none(whitened)
    if w is not None:
        pg_loss, pg_clipfrac = pg_terms(w, new_logprobs, logprobs, ~padding_mask, c["cliprange"])
    else:
        pg_loss = pg_clipfrac = None
    pg_loss_u, pg_clipfrac_u = pg_terms(raw_advantages, new_logprobs, logprobs, ~padding_mask, c["cliprange"])
    logprobs_diff = new_logprobs - logprobs
    approxkl = 0.5 * (logprobs_diff**2).mean()
    entropy = entropy_from_logits(x["logits"])

    out.update(
        value_mask=(~padding_mask_p1).long(),
        score_index=actual_end,
        advantages=raw_advantages,
        returns=returns,
        whitened_advantages=w,
        pg_loss=pg_loss,
        pg_clipfrac=pg_clipfrac,
        pg_loss_unwhitened=pg_loss_u,
        pg_clipfrac_unwhitened=pg_clipfrac_u,
        approxkl=approxkl,
        vf_loss=vf_loss,
        vf_clipfrac=vf_clipfrac,
        entropy=entropy,
        entropy_mean=entropy.mean(),
    )
    return out


# ---------------------------------------------------------------- TRL v0.11.0 legacy PPOTrainer
def trl_legacy_action_mask(c, x):
    mask = x["action_mask"]
    B, T = mask.shape
    scores = x["scores"].clone()
    if c["missing_eos_penalty"] is not None:  # not in the legacy trainer; as in v0.19.1
        scores[~x["has_eos"]] -= c["missing_eos_penalty"]
    logprobs, ref_logprobs = x["logprobs"], x["ref_logprobs"]
    out = {}
    for est in ("k1", "k3"):
        if est == "k1":
            kl = logprobs - ref_logprobs  # _kl_penalty, kl_penalty == "kl"
        else:  # TRL v0.19.1 k3, unclamped
            logr = ref_logprobs - logprobs
            kl = (logr.exp() - 1) - logr
        non_score_reward = -c["kl_coef"] * kl
        rewards = []
        for i in range(B):
            reward = non_score_reward[i].clone()
            last_non_masked_index = mask[i].nonzero()[-1]
            reward[last_non_masked_index] += scores[i]
            rewards.append(reward)
        # compute_advantages: rewards = rewards * mask
        out["rewards_" + est] = torch.stack(rewards) * mask
    values = x["values"] * mask
    rewards = out["rewards_k1"]
    advantages, returns = gae(rewards, values, c["gamma"], c["lam"])
    whitened = masked_whiten(advantages, mask)
    whitened = torch.masked_fill(whitened, mask == 0, 0)  # legacy leaves them; zeroed here
    w = finite_or_none(whitened)

    new_logprobs = x["new_logprobs"]
    vf_loss, vf_clipfrac = vf_terms(x["new_values"], values, returns, mask, c["cliprange_value"])
    if w is not None:
        pg_loss, pg_clipfrac = pg_terms(w, new_logprobs, logprobs, mask, c["cliprange"])
    else:
        pg_loss = pg_clipfrac = None
    pg_loss_u, pg_clipfrac_u = pg_terms(advantages, new_logprobs, logprobs, mask, c["cliprange"])
    approxkl = 0.5 * masked_mean((new_logprobs - logprobs) ** 2, mask)
    entropy_mean = masked_mean(entropy_from_logits(x["logits"]), mask)
    out.update(
        advantages=advantages,
        returns=returns,
        whitened_advantages=w,
        pg_loss=pg_loss,
        pg_clipfrac=pg_clipfrac,
        pg_loss_unwhitened=pg_loss_u,
        pg_clipfrac_unwhitened=pg_clipfrac_u,
        approxkl=approxkl,
        vf_loss=vf_loss,
        vf_clipfrac=vf_clipfrac,
        entropy_mean=entropy_mean,
    )
    return out


# ---------------------------------------------------------------- inputs
def r4(t):
    return torch.round(t * 1e4) / 1e4


def make_inputs(g, lengths, has_eos, T, large=False):
    B = len(lengths)
    d = torch.float64

    def U(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=d)

    mask = (torch.arange(T).repeat(B, 1) < torch.tensor(lengths).unsqueeze(1)).long()
    m = mask.bool()
    if large:
        lr = U(-3.0, 3.0, B, T)
        lr[0, 1] = -3.0  # k3 = e^3 - 4 = 16.09 -> clamped to 10 by OpenRLHF
        lr[1, 0] = 2.9
        lp = torch.clamp(lr - 0.05, max=-0.05) - U(0.0, 2.5, B, T)
        ref = lp - lr
        new = torch.clamp(lp + U(-1.0, 1.0, B, T), max=-0.01)
        values = U(-3.0, 3.0, B, T)
        new_values = values + U(-1.5, 1.5, B, T)
        scores = U(-4.0, 4.0, B)
    else:
        lp = U(-4.0, -0.05, B, T)
        ref = torch.clamp(lp + U(-0.6, 0.6, B, T), -4.0, -0.05)
        new = torch.clamp(lp + U(-0.3, 0.3, B, T), -4.0, -0.05)
        values = U(-2.0, 2.0, B, T)
        new_values = torch.clamp(values + U(-0.4, 0.4, B, T), -2.0, 2.0)
        scores = U(-2.0, 2.0, B)
    logits = torch.randn(B, T, V, generator=g, dtype=d) * 1.5

    def sign(*shape):
        return torch.where(torch.rand(*shape, generator=g) < 0.5, -1.0, 1.0).to(d)

    # garbage at masked-out positions
    lp = torch.where(m, lp, U(0.5, 3.0, B, T))
    ref = torch.where(m, ref, U(0.5, 3.0, B, T))
    new = torch.where(m, new, U(0.5, 3.0, B, T))
    # TRL's PPOTrainer also uses the values at the first padding position (its value mask
    # ~padding_mask_p1 keeps it): moderate there, garbage beyond
    p1 = torch.arange(T).repeat(B, 1) == torch.tensor(lengths).unsqueeze(1)
    values = torch.where(m | p1, values, sign(B, T) * U(3.0, 6.0, B, T))
    new_values = torch.where(m | p1, new_values, sign(B, T) * U(3.0, 6.0, B, T))
    logits = torch.where(m.unsqueeze(-1), logits, torch.randn(B, T, V, generator=g, dtype=d) * 5 + 2)
    return {
        "action_mask": mask,
        "has_eos": torch.tensor(has_eos),
        "scores": r4(scores),
        "logprobs": r4(lp),
        "ref_logprobs": r4(ref),
        "values": r4(values),
        "new_logprobs": r4(new),
        "new_values": r4(new_values),
        "logits": r4(logits),
    }


CASES = [
    # (a)
    dict(name="mixed_lengths_gamma1", kl_coef=0.01, gamma=1.0, lam=0.95, cliprange=0.2, cliprange_value=0.2,
         missing_eos_penalty=None, lengths=[4, 6, 2], has_eos=[True, True, True], T=6, seed=11),
    # (b) row 0 has no EOS: it ran to the full length T
    dict(name="discounted_eos_penalty", kl_coef=0.05, gamma=0.99, lam=0.9, cliprange=0.2, cliprange_value=0.2,
         missing_eos_penalty=1.0, lengths=[6, 3, 5], has_eos=[False, True, True], T=6, seed=12),
    # (c)
    dict(name="large_log_ratios_clipping", kl_coef=0.1, gamma=0.99, lam=0.95, cliprange=0.2, cliprange_value=0.2,
         missing_eos_penalty=None, lengths=[6, 4, 5], has_eos=[True, True, True], T=6, seed=13, large=True),
    # (d)
    dict(name="single_token", kl_coef=0.01, gamma=1.0, lam=0.95, cliprange=0.2, cliprange_value=0.2,
         missing_eos_penalty=None, lengths=[1], has_eos=[True], T=4, seed=14),
    # (e) two rows without EOS (full length), another hyper-parameter set
    dict(name="batch4_two_missing_eos", kl_coef=0.02, gamma=0.95, lam=0.9, cliprange=0.1, cliprange_value=0.5,
         missing_eos_penalty=1.0, lengths=[5, 2, 5, 3], has_eos=[False, True, False, True], T=5, seed=15),
]


def tolist(v):
    if v is None:
        return None
    if isinstance(v, torch.Tensor):
        if v.dtype == torch.bool:
            return [bool(b) for b in v.tolist()]
        if v.is_floating_point():
            v = v + 0.0  # -0.0 -> 0.0
        return v.tolist()
    return v


def build():
    cases = []
    for spec in CASES:
        g = torch.Generator().manual_seed(spec["seed"])
        x = make_inputs(g, spec["lengths"], spec["has_eos"], spec["T"], spec.get("large", False))
        c = {k: spec[k] for k in ("kl_coef", "gamma", "lam", "cliprange", "cliprange_value", "missing_eos_penalty")}
        exp = {
            "kl_k1": compute_approx_kl(x["logprobs"], x["ref_logprobs"], "k1"),
            "kl_k2": compute_approx_kl(x["logprobs"], x["ref_logprobs"], "k2"),
            "kl_k3": compute_approx_kl(x["logprobs"], x["ref_logprobs"], "k3"),
        }
        exp.update(trl_ppo_trainer(c, x))
        legacy = trl_legacy_action_mask(c, x)
        check(spec, x, exp, legacy)
        case = {"name": spec["name"], **c}
        case.update({k: tolist(v) for k, v in x.items()})
        case["expected"] = {k: tolist(v) for k, v in exp.items()}
        case["expected_action_mask"] = {k: tolist(v) for k, v in legacy.items()}
        cases.append(case)
    return {"source": SOURCE, "cases": cases}


def check(spec, x, exp, legacy):
    m = x["action_mask"].bool()
    single = spec["name"] == "single_token"
    for which, d in (("expected", exp), ("expected_action_mask", legacy)):
        for k, v in d.items():
            if v is None:
                assert single and k in ("whitened_advantages", "pg_loss", "pg_clipfrac"), (spec["name"], which, k)
            else:
                assert bool(torch.isfinite(v.double()).all()), (spec["name"], which, k)
        if not single:
            wa = d["whitened_advantages"]
            assert abs(float(wa[m].mean())) < 1e-12 and abs(float(wa[m].std()) - 1) < 1e-6
    if spec.get("large"):
        for d in (exp, legacy):
            assert 0 < float(d["pg_clipfrac"]) < 1, float(d["pg_clipfrac"])
            assert float(d["vf_clipfrac"]) > 0
        raw_k3 = torch.exp(x["ref_logprobs"] - x["logprobs"]) - 1 - (x["ref_logprobs"] - x["logprobs"])
        assert bool(((raw_k3 > 10) & m).any()), "k3 clamp not exercised"
    else:
        for k in ("logprobs", "ref_logprobs", "new_logprobs"):
            assert float(x[k][m].min()) >= -4 and float(x[k][m].max()) <= -0.05
        p1 = torch.zeros_like(m)
        p1[:, 1:] = m[:, :-1] & ~m[:, 1:]
        for k in ("values", "new_values"):
            assert float(x[k][m | p1].abs().max()) <= 2
        assert float(x["scores"].abs().max()) <= 2
    # garbage is non-zero at every masked-out position
    for k in ("logprobs", "ref_logprobs", "new_logprobs", "values", "new_values"):
        assert bool((x[k][~m] != 0).all())


# ---------------------------------------------------------------- JSON
def fmt(v, ind):
    pad = "  " * ind
    if isinstance(v, dict):
        items = [f'{pad}  {json.dumps(k)}: {fmt(val, ind + 1)}' for k, val in v.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(v, list):
        if all(not isinstance(e, (list, dict)) for e in v):
            return "[" + ", ".join(fmt(e, ind) for e in v) + "]"
        return "[\n" + ",\n".join(pad + "  " + fmt(e, ind + 1) for e in v) + "\n" + pad + "]"
    if isinstance(v, float):
        assert math.isfinite(v)
        return repr(v)
    return json.dumps(v)


def main():
    torch.set_num_threads(1)
    data = build()
    text = fmt(data, 0) + "\n"
    assert json.loads(text) == json.loads(json.dumps(data))
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write(text)
    print(f"wrote {OUT} ({len(text)} bytes, {len(data['cases'])} cases)")


if __name__ == "__main__":
    main()
