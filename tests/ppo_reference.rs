//! PPO's math against a PyTorch transcription of TRL's and OpenRLHF's formulas
//! (`scripts/gen_rlhf_reference.py` → `tests/data/rlhf/ppo_reference.json`): the KL
//! estimators (OpenRLHF's `compute_approx_kl`, clamped to ±10), the KL-shaped rewards with
//! the missing-EOS penalty, GAE, advantage whitening, the clipped policy and value losses
//! and the entropy, with TRL's action-mask convention (the score at the last response
//! token). Inputs hold garbage past each response, so the masks are exercised.

use burn::tensor::{Tensor, TensorData};
use llama2_burn::rlhf::ppo::{
    AdvantageConfig, KlEstimator, PpoLossConfig, PpoTokens, gae, token_rewards, whiten_rows,
};
use serde_json::Value;

type B = llama2_burn::backend::Selected;

const TOL: f64 = 1e-6;

fn cases() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/rlhf/ppo_reference.json"
    );
    let json: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = json["cases"].as_array().unwrap().clone();
    assert!(cases.len() >= 4, "{} cases", cases.len());
    cases
}

fn matrix(v: &Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

fn vector(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Response lengths from a right-padded 0/1 mask.
fn lengths(case: &Value) -> Vec<usize> {
    matrix(&case["action_mask"])
        .iter()
        .map(|row| {
            let n = row.iter().take_while(|&&m| m == 1.0).count();
            assert!(row[n..].iter().all(|&m| m == 0.0), "right padding");
            n
        })
        .collect()
}

/// The first `lens[b]` values of each row.
fn cut(m: &[Vec<f64>], lens: &[usize]) -> Vec<Vec<f64>> {
    assert_eq!(m.len(), lens.len());
    m.iter().zip(lens).map(|(r, &n)| r[..n].to_vec()).collect()
}

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= TOL * want.abs().max(1.0),
        "{what}: {got} vs {want}"
    );
}

/// `got` against the reference's first `len` values of each row, and 0 (TRL's masked
/// value) wherever the reference is past the end.
fn close_rows(got: &[Vec<f64>], want: &Value, lens: &[usize], what: &str) {
    let want = matrix(want);
    assert_eq!(got.len(), want.len(), "{what}: rows");
    for (b, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.len(), lens[b], "{what}: row {b} length");
        for (t, x) in w.iter().enumerate() {
            let mine = g.get(t).copied().unwrap_or(0.0);
            close(mine, *x, &format!("{what}[{b}][{t}]"));
        }
    }
}

fn config(case: &Value) -> AdvantageConfig {
    AdvantageConfig::new()
        .with_kl_coef(case["kl_coef"].as_f64().unwrap())
        .with_gamma(case["gamma"].as_f64().unwrap())
        .with_lam(case["lam"].as_f64().unwrap())
        .with_missing_eos_penalty(case["missing_eos_penalty"].as_f64())
}

#[test]
fn kl_estimators_equal_openrlhf() {
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let logp = matrix(&case["logprobs"]);
        let refp = matrix(&case["ref_logprobs"]);
        for (est, key) in [
            (KlEstimator::K1, "kl_k1"),
            (KlEstimator::K2, "kl_k2"),
            (KlEstimator::K3, "kl_k3"),
        ] {
            let want = matrix(&case["expected"][key]);
            assert_eq!(want.len(), logp.len());
            for b in 0..logp.len() {
                let got = est.per_token(&logp[b], &refp[b], Some(10.0));
                assert_eq!(got.len(), want[b].len());
                for (g, w) in got.iter().zip(&want[b]) {
                    close(*g, *w, &format!("{name} {key}"));
                }
            }
        }
    }
}

#[test]
fn rewards_advantages_and_returns_equal_trl() {
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let want = &case["expected_action_mask"];
        let lens = lengths(&case);
        let logp = cut(&matrix(&case["logprobs"]), &lens);
        let refp = cut(&matrix(&case["ref_logprobs"]), &lens);
        let values = cut(&matrix(&case["values"]), &lens);
        let scores = vector(&case["scores"]);
        let ended: Vec<bool> = case["has_eos"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_bool().unwrap())
            .collect();
        let c = config(&case);
        for (est, key) in [
            (KlEstimator::K1, "rewards_k1"),
            (KlEstimator::K3, "rewards_k3"),
        ] {
            let rewards: Vec<Vec<f64>> = (0..lens.len())
                .map(|b| {
                    token_rewards(
                        &est.per_token(&logp[b], &refp[b], None),
                        scores[b],
                        ended[b],
                        &c,
                    )
                })
                .collect();
            close_rows(&rewards, &want[key], &lens, &format!("{name} {key}"));
        }
        let out = c
            .clone()
            .with_whiten_advantages(false)
            .compute(&logp, &refp, &values, &scores, &ended);
        close_rows(
            &out.advantages,
            &want["advantages"],
            &lens,
            &format!("{name} advantages"),
        );
        close_rows(
            &out.returns,
            &want["returns"],
            &lens,
            &format!("{name} returns"),
        );
        // The same by hand from the rewards.
        assert_eq!(out.rewards.len(), values.len());
        for ((rewards, values), advantages) in out.rewards.iter().zip(&values).zip(&out.advantages)
        {
            let (a, _) = gae(rewards, values, c.gamma, c.lam);
            assert_eq!(&a, advantages);
        }
        let whitened = whiten_rows(&out.advantages);
        if want["whitened_advantages"].is_null() {
            // One token: TRL's unbiased variance is 0/0; the advantage becomes 0.
            assert_eq!(lens.iter().sum::<usize>(), 1, "{name}");
            assert!(whitened.iter().flatten().all(|&x| x == 0.0));
        } else {
            close_rows(
                &whitened,
                &want["whitened_advantages"],
                &lens,
                &format!("{name} whitened"),
            );
            let out = c.compute(&logp, &refp, &values, &scores, &ended);
            assert_eq!(out.advantages, whitened);
        }
    }
}

fn tensor(rows: &[Vec<f64>]) -> Tensor<B, 2> {
    let (b, t) = (rows.len(), rows[0].len());
    let flat: Vec<f32> = rows.iter().flatten().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(flat, [b, t]), &Default::default())
}

fn scalar(t: Tensor<B, 1>) -> f64 {
    f64::from(t.into_data().to_vec::<f32>().unwrap()[0])
}

#[test]
fn clipped_policy_and_value_losses_equal_trl() {
    // f32 tensors: the losses are compared within 1e-6 of their scale.
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let want = &case["expected_action_mask"];
        let mask = matrix(&case["action_mask"]);
        let n: f64 = mask.iter().flatten().sum();
        let losses = PpoLossConfig::new()
            .with_cliprange(case["cliprange"].as_f64().unwrap())
            .with_cliprange_value(case["cliprange_value"].as_f64().unwrap());
        let (advantages, pg_key, clip_key) = if want["whitened_advantages"].is_null() {
            (
                matrix(&want["advantages"]),
                "pg_loss_unwhitened",
                "pg_clipfrac_unwhitened",
            )
        } else {
            (
                matrix(&want["whitened_advantages"]),
                "pg_loss",
                "pg_clipfrac",
            )
        };
        let l = losses.forward(
            PpoTokens {
                logprobs: tensor(&matrix(&case["new_logprobs"])),
                old_logprobs: tensor(&matrix(&case["logprobs"])),
                advantages: tensor(&advantages),
                values: tensor(&matrix(&case["new_values"])),
                old_values: tensor(&matrix(&case["values"])),
                returns: tensor(&matrix(&want["returns"])),
                mask: tensor(&mask),
            },
            n,
        );
        let f = |key: &str| want[key].as_f64().unwrap();
        close(scalar(l.policy), f(pg_key), &format!("{name} pg_loss"));
        close(
            scalar(l.policy_clipped) / n,
            f(clip_key),
            &format!("{name} pg_clipfrac"),
        );
        close(
            scalar(l.approx_kl) / n,
            f("approxkl"),
            &format!("{name} approxkl"),
        );
        close(scalar(l.value), f("vf_loss"), &format!("{name} vf_loss"));
        close(
            scalar(l.value_clipped) / n,
            f("vf_clipfrac"),
            &format!("{name} vf_clipfrac"),
        );
        let total = scalar(l.total);
        close(
            total,
            f(pg_key) + 0.1 * f("vf_loss"),
            &format!("{name} total"),
        );
    }
}

#[test]
fn entropy_of_the_sampling_distribution_equals_trl() {
    use llama2_burn::rlhf::rollout::ResponseBatch;
    // The batch's entropy at each response position: logits laid out so that response
    // token j of row b reads position j (a one-token prompt).
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let lens = lengths(&case);
        let logits: Vec<Vec<Vec<f64>>> = case["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(matrix)
            .collect();
        let (b, t, v) = (logits.len(), logits[0].len(), logits[0][0].len());
        let prompt = [1u32];
        let responses: Vec<Vec<u32>> = lens.iter().map(|&n| vec![0; n]).collect();
        let rows: Vec<(&[u32], &[u32])> = responses
            .iter()
            .map(|r| (&prompt[..], r.as_slice()))
            .collect();
        let batch = ResponseBatch::<B>::new(&rows, 64, &Default::default()).unwrap();
        let [_, seq] = batch.tokens.dims();
        // Positions 0..t of each row carry the case's logits (seq = 1 + max len ≤ t + 1).
        let mut flat = Vec::with_capacity(b * seq * v);
        for row in &logits {
            for p in 0..seq {
                let l = row.get(p).unwrap_or(&row[t - 1]);
                flat.extend(l.iter().map(|&x| x as f32));
            }
        }
        let logits =
            Tensor::<B, 3>::from_data(TensorData::new(flat, [b, seq, v]), &Default::default());
        let (_, entropy) = batch.logprobs_and_entropy(logits);
        let got = entropy.into_data().to_vec::<f32>().unwrap();
        let want = matrix(&case["expected"]["entropy"]);
        let width = got.len() / b;
        let mut sum = 0.0;
        for (row, &n) in lens.iter().enumerate() {
            for j in 0..n {
                let g = f64::from(got[row * width + j]);
                close(g, want[row][j], &format!("{name} entropy[{row}][{j}]"));
                sum += g;
            }
        }
        let n: usize = lens.iter().sum();
        close(
            sum / n as f64,
            case["expected_action_mask"]["entropy_mean"]
                .as_f64()
                .unwrap(),
            &format!("{name} entropy mean"),
        );
    }
}
