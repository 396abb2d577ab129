#!/usr/bin/env python3
"""CPU reward-model training baseline: TRL's RewardTrainer on transformers'
LlamaForSequenceClassification (f32, PyTorch eager), to compare with
`cargo run --release --example reward -- train --steps N`.

The same run on both sides: the default tiny reward model of the `reward` example (width
96, 3 layers, 4 heads / 2 KV heads, SwiGLU width 256, the small tokenizer's 1200 tokens),
the synthetic preference pairs of examples/data/preferences_train.jsonl in the Llama 2-Chat
format (pre-tokenized here with sentencepiece, Meta's chat encoding), 32 pairs per step,
margin "small" (the `margin` column: the paper's small margins by rating), AdamW
lr 1e-3, betas (0.9, 0.95), weight decay 0.1, clipping 1.0, 20 warmup steps then cosine.

Reports pairs/s of the training loop (TRL's `train_samples_per_second`, the run's
`train_runtime`) and the process's peak RSS.

Usage: .venv/bin/python scripts/bench_hf_reward.py --steps 200 --threads 2 [--json]
"""

import argparse
import json
import os
import platform
import resource
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL_MARGIN = {"significantly_better": 1.0, "better": 2.0 / 3.0, "slightly_better": 1.0 / 3.0,
                "negligibly_better": 0.0, "unsure": 0.0}
B_INST, E_INST, B_SYS, E_SYS = "[INST]", "[/INST]", "<<SYS>>\n", "\n<</SYS>>\n\n"


def encode_dialog(sp, messages):
    """Meta's chat_completion encoding of a dialog ending with an assistant answer."""
    if messages[0]["role"] == "system":
        messages = [{"role": messages[1]["role"],
                     "content": B_SYS + messages[0]["content"] + E_SYS + messages[1]["content"]}] + messages[2:]
    ids = []
    for user, answer in zip(messages[::2], messages[1::2]):
        ids += [sp.bos_id()] + sp.encode(f"{B_INST} {user['content'].strip()} {E_INST} {answer['content'].strip()} ") + [sp.eos_id()]
    return ids


def turns(x, role):
    return [{"role": role, "content": x}] if isinstance(x, str) else x


def load_pairs(sp, path):
    rows = []
    for line in open(path):
        r = json.loads(line)
        prompt = turns(r["prompt"], "user")
        rows.append({
            "chosen_ids": encode_dialog(sp, prompt + turns(r["chosen"], "assistant")),
            "rejected_ids": encode_dialog(sp, prompt + turns(r["rejected"], "assistant")),
            "margin": SMALL_MARGIN[r["rating"]],
        })
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch
    import sentencepiece
    import transformers
    import trl
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForSequenceClassification, LlamaTokenizer
    from trl import RewardConfig, RewardTrainer

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tok_path = os.path.join(ROOT, "tests/data/tokenizer/small.model")
    sp = sentencepiece.SentencePieceProcessor(model_file=tok_path)
    tokenizer = LlamaTokenizer(vocab_file=tok_path, legacy=True)
    tokenizer.pad_token_id = 0
    pairs = load_pairs(sp, os.path.join(ROOT, "examples/data/preferences_train.jsonl"))
    config = LlamaConfig(
        vocab_size=sp.vocab_size(), hidden_size=96, intermediate_size=256,
        num_hidden_layers=args.layers, num_attention_heads=4, num_key_value_heads=2,
        rms_norm_eps=1e-5, max_position_embeddings=512, tie_word_embeddings=False,
        bos_token_id=1, eos_token_id=2, pad_token_id=0, num_labels=1,
    )
    model = LlamaForSequenceClassification(config).to(torch.float32)
    model.set_attn_implementation("eager")
    out = os.path.join("/tmp", f"bench-hf-reward-{os.getpid()}")
    cfg = RewardConfig(
        output_dir=out, max_steps=args.steps, per_device_train_batch_size=32,
        learning_rate=1e-3, lr_scheduler_type="cosine", warmup_steps=20,
        adam_beta1=0.9, adam_beta2=0.95, weight_decay=0.1, max_grad_norm=1.0,
        logging_steps=args.steps, save_strategy="no", report_to=[], use_cpu=True,
        dataloader_num_workers=0, max_length=None, disable_dropout=True, seed=0,
        bf16=False, fp16=False,
    )
    trainer = RewardTrainer(model=model, args=cfg, train_dataset=Dataset.from_list(pairs),
                            processing_class=tokenizer)
    t0 = time.perf_counter()
    result = trainer.train()
    wall = time.perf_counter() - t0
    m = result.metrics
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = dict(
        steps=args.steps, pairs=args.steps * 32, threads=args.threads, layers=args.layers,
        train_runtime_s=m["train_runtime"], pairs_per_s=args.steps * 32 / m["train_runtime"],
        wall_s=wall, train_loss=m.get("train_loss"), peak_rss_mib=rss,
        torch=torch.__version__, transformers=transformers.__version__, trl=trl.__version__,
        python=platform.python_version(), loadavg_after=[round(x, 2) for x in os.getloadavg()],
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"TRL {report['trl']} RewardTrainer, transformers {report['transformers']}, torch {report['torch']}, "
              f"{args.threads} threads: {args.steps} steps of 32 pairs in {m['train_runtime']:.1f} s = "
              f"{report['pairs_per_s']:.1f} pairs/s, final loss {report['train_loss']:.4f}, peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
