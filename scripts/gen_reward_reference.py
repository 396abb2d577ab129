#!/usr/bin/env python3
"""Reference data for the reward model tests (tests/reward_reference.rs).

Writes tests/data/reward/:

  hf/                 a tiny transformers LlamaForSequenceClassification (GQA: dim 64, 2 layers,
                      4 heads, 2 kv heads, vocab 1200 = tests/data/tokenizer/small.model,
                      num_labels 1, pad_token_id 0), bf16 safetensors + config.json
  reference.json      token sequences; transformers' reward of each sequence alone, of a
                      right-padded batch and of a left-padded batch (attention_mask +
                      position_ids); float64 PyTorch ranking losses for (chosen, rejected,
                      margin) triples including extreme differences; TRL's RewardTrainer loss
                      with center_rewards_coefficient; per-rating accuracy of given rewards
  bad/                malformed inputs: preference rows, and micro seq-cls directories without
                      a score head or with a score head of the wrong shape

Deterministic (fixed seeds, single-threaded float32 CPU).
Usage: .venv/bin/python scripts/gen_reward_reference.py
       .venv/bin/python scripts/gen_reward_reference.py --check-export DIR
         (loads a directory written by RewardModel::export_hf in transformers and checks its
          rewards of the reference sequences against reference.json, within 1e-5)
"""

import copy
import json
import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForSequenceClassification

sys.dont_write_bytecode = True
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "reward")
PAD = 0
TOL = 1e-5

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


def config(dim, layers, heads, kv_heads, vocab, ffn):
    return LlamaConfig(
        vocab_size=vocab, hidden_size=dim, intermediate_size=ffn, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=128,
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False, num_labels=1,
        pad_token_id=PAD, bos_token_id=1, eos_token_id=2, attn_implementation="eager",
    )


def make_model(cfg, seed):
    """Seeded weights with a spread of rewards: embeddings N(0, 1), linears N(0, 0.15²),
    score N(0, 0.3²), norms 1 + 0.1·N(0, 1), every value rounded to bf16."""
    torch.manual_seed(seed)
    model = LlamaForSequenceClassification(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                v = 1.0 + 0.1 * torch.randn_like(p)
            elif "embed_tokens" in name:
                v = torch.randn_like(p)
            elif name == "score.weight":
                v = 0.3 * torch.randn_like(p)
            else:
                v = 0.15 * torch.randn_like(p)
            p.copy_(v.to(torch.bfloat16).to(torch.float32))
    return model


def save_hf(model, path):
    """Saves a bf16 copy; the float32 model itself is left alone (casting it back and forth
    would round its rotary inv_freq buffer to bf16)."""
    copy.deepcopy(model).to(torch.bfloat16).save_pretrained(path, safe_serialization=True)


@torch.no_grad()
def rewards(model, ids, mask=None, position_ids=None):
    out = model(input_ids=ids, attention_mask=mask, position_ids=position_ids).logits
    assert out.shape == (ids.shape[0], 1), out.shape
    return out[:, 0].tolist()


def ranking_loss(c, r, m):
    """Paper eq. 2 in float64: -log sigmoid(r_c - r_r - m)."""
    c, r, m = (torch.tensor(x, dtype=torch.float64) for x in (c, r, m))
    return (-torch.nn.functional.logsigmoid(c - r - m)).tolist()


def trl_loss(c, r, coef):
    """trl.RewardTrainer.compute_loss (no margin): -logsigmoid(c - r).mean()
    + center_rewards_coefficient * mean((c + r)^2)."""
    c, r = torch.tensor(c, dtype=torch.float64), torch.tensor(r, dtype=torch.float64)
    return float(-torch.nn.functional.logsigmoid(c - r).mean() + coef * torch.mean((c + r) ** 2))


RATINGS = ["significantly_better", "better", "slightly_better", "negligibly_better", "unsure"]
TABLE8 = {"significantly_better": 0, "better": 1, "slightly_better": 2,
          "negligibly_better": 3, "unsure": 3}


def bucket_accuracy(c, r, ratings):
    correct, total = [0] * 4, [0] * 4
    for ci, ri, rating in zip(c, r, ratings):
        if rating is None:
            continue
        col = TABLE8[rating]
        total[col] += 1
        correct[col] += int(ci > ri)
    return {"correct": correct, "total": total,
            "overall": sum(ci > ri for ci, ri in zip(c, r)) / len(c)}


def main():
    if os.path.exists(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    ref = {}

    cfg = config(64, 2, 4, 2, 1200, 192)
    model = make_model(cfg, 0)
    save_hf(model, os.path.join(OUT, "hf"))
    # The saved bf16 file holds exactly the f32 values used below.
    reloaded = LlamaForSequenceClassification.from_pretrained(
        os.path.join(OUT, "hf"), dtype=torch.float32, attn_implementation="eager").eval()
    for (n, a), (_, b) in zip(model.state_dict().items(), reloaded.state_dict().items()):
        assert torch.equal(a, b), n
    probe = torch.randint(3, cfg.vocab_size, (1, 9), generator=torch.Generator().manual_seed(9))
    assert rewards(model, probe) == rewards(reloaded, probe)

    g = torch.Generator().manual_seed(1)
    lengths = [5, 11, 17, 30]
    seqs = [torch.randint(3, cfg.vocab_size, (n,), generator=g).tolist() for n in lengths]
    ref["sequences"] = seqs
    alone = [rewards(model, torch.tensor([s]))[0] for s in seqs]
    ref["rewards_alone"] = alone

    T = max(lengths)
    right = torch.full((len(seqs), T), PAD, dtype=torch.long)
    left = torch.full((len(seqs), T), PAD, dtype=torch.long)
    mask_r = torch.zeros((len(seqs), T), dtype=torch.long)
    mask_l = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        right[i, : len(s)] = torch.tensor(s)
        mask_r[i, : len(s)] = 1
        left[i, T - len(s):] = torch.tensor(s)
        mask_l[i, T - len(s):] = 1
    pos_l = (mask_l.cumsum(-1) - 1).clamp(min=0)
    ref["right_padded"] = {"tokens": right.tolist(), "lengths": lengths,
                           "rewards": rewards(model, right, mask_r)}
    ref["left_padded"] = {"tokens": left.tolist(), "lengths": lengths,
                          "rewards": rewards(model, left, mask_l, pos_l)}
    for key in ("right_padded", "left_padded"):
        diff = max(abs(a - b) for a, b in zip(ref[key]["rewards"], alone))
        assert diff < TOL, (key, diff)
    assert max(alone) - min(alone) > 0.1, alone

    triples = [(0.0, 120.0, 0.0), (120.0, 0.0, 0.0), (-1e4, 1e4, 0.0), (1e4, -1e4, 0.0),
               (0.0, 0.0, 0.0), (1.0, 1.0, 3.0), (0.5, 0.25, 1.0 / 3.0), (-3.0, 2.0, 2.0 / 3.0),
               (60.0, -60.0, 1.0), (-60.0, 60.0, 1.0), (1e-7, 0.0, 0.0), (2.5, -1.5, 2.0)]
    rnd = torch.Generator().manual_seed(2)
    for _ in range(12):
        c, r = (torch.randn(2, generator=rnd, dtype=torch.float64) * 4).tolist()
        m = [0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0, 2.0, 3.0][int(torch.randint(6, (1,), generator=rnd))]
        triples.append((c, r, m))
    c, r, m = map(list, zip(*triples))
    ref["loss"] = {"chosen": c, "rejected": r, "margin": m, "loss": ranking_loss(c, r, m)}
    c8, r8 = c[4:], r[4:]
    ref["trl_loss"] = {"chosen": c8, "rejected": r8, "center_rewards_coefficient": 0.01,
                       "loss": trl_loss(c8, r8, 0.01)}

    rg = torch.Generator().manual_seed(3)
    n = 40
    rc = (torch.randn(n, generator=rg) + 0.5).tolist()
    rr = torch.randn(n, generator=rg).tolist()
    rr[0] = rc[0]  # a tie is not a correct ranking
    ratings = [RATINGS[int(i)] for i in torch.randint(5, (n,), generator=rg)]
    ratings[1] = None
    ref["buckets"] = {"chosen": rc, "rejected": rr, "ratings": ratings,
                      **bucket_accuracy(rc, rr, ratings)}

    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")

    # Bad inputs.
    bad = os.path.join(OUT, "bad")
    os.makedirs(bad)
    good_row = json.dumps({"prompt": "1+1?", "chosen": "2", "rejected": "3", "rating": "better"})
    cases = {
        "malformed-json.jsonl": [good_row, '{"prompt": "1+1?", "chosen": "2", '],
        "missing-rejected.jsonl": [good_row, good_row, json.dumps({"prompt": "a", "chosen": "b"})],
        "bad-message.jsonl": [json.dumps({"chosen": [{"role": "robot", "content": "x"}],
                                          "rejected": "y"})],
        "unknown-rating.jsonl": [good_row, json.dumps({"prompt": "1+1?", "chosen": "2",
                                                       "rejected": "3", "rating": "much_better"})],
    }
    for name, rows in cases.items():
        with open(os.path.join(bad, name), "w") as f:
            f.write("\n".join(rows) + "\n")
    micro = make_model(config(16, 1, 4, 2, 32, 32), 4)
    save_hf(micro, os.path.join(bad, "micro-good"))
    for name, edit in [("micro-no-score", lambda sd: sd.pop("score.weight")),
                       ("micro-score-wrong-shape",
                        lambda sd: sd.__setitem__("score.weight", torch.zeros(2, 16, dtype=torch.bfloat16)))]:
        shutil.copytree(os.path.join(bad, "micro-good"), os.path.join(bad, name))
        path = os.path.join(bad, name, "model.safetensors")
        sd = load_file(path)
        edit(sd)
        save_file(sd, path, metadata={"format": "pt"})
    print("wrote", OUT)


def check_export(path):
    model = LlamaForSequenceClassification.from_pretrained(
        path, dtype=torch.float32, attn_implementation="eager").eval()
    assert model.config.num_labels == 1, model.config.num_labels
    with open(os.path.join(OUT, "reference.json")) as f:
        ref = json.load(f)
    got = [rewards(model, torch.tensor([s]))[0] for s in ref["sequences"]]
    diff = max(abs(a - b) for a, b in zip(got, ref["rewards_alone"]))
    assert diff < TOL, diff
    print(f"{path}: rewards within {diff:.2e} of reference.json")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check-export":
        check_export(sys.argv[2])
    else:
        main()
