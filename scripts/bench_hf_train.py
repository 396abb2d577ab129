#!/usr/bin/env python3
"""CPU training baseline: Hugging Face transformers LlamaForCausalLM (f32, random
weights, PyTorch eager mode) on the tinyllamas shapes, to compare with
`cargo run --release --example bench_train`.

Each step is the one llama2-burn's Trainer runs on one batch of random tokens:
forward over `batch x seq_len` inputs, mean token cross-entropy against the
next tokens, backward, torch.nn.utils.clip_grad_norm_(1.0), and
torch.optim.AdamW(betas=(0.9, 0.95), eps=1e-5, weight_decay=0.1 on the
matrices, 0 on the RMSNorm gains).

For each shape (each in a fresh subprocess, so peak RSS is per shape):
  * training tokens/s: batch x seq_len over the median step time of --steps
    steps after --warmup steps (the first step also allocates AdamW's moments),
  * peak RSS (VmHWM) of the subprocess.

Usage:
  python scripts/bench_hf_train.py                          # 15M at 8x256, 110M at 4x256
  python scripts/bench_hf_train.py --shapes 110M --threads 2 --steps 10 --json
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_hf import SHAPES, peak_rss_mib, print_table, run_workers  # noqa: E402

DEFAULT_BATCH = {"15M": 8}  # other shapes: 4


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="15M,110M", help=f"comma list of {','.join(SHAPES)}")
    ap.add_argument("--batch", type=int, help="sequences per step (default: 8 for 15M, 4 otherwise)")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads")
    ap.add_argument("--attn", default="eager", choices=["eager", "sdpa"], help="transformers attention kernel")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.steps < 1 or args.seq_len < 1 or args.warmup < 0 or (args.batch is not None and args.batch < 1):
        ap.error("--steps, --seq-len and --batch must be positive, --warmup non-negative")
    return args


def batch_for(args, shape):
    return args.batch if args.batch is not None else DEFAULT_BATCH.get(shape, 4)


def worker(args):
    import torch
    import torch.nn.functional as F
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    shape = args.worker
    s = SHAPES[shape]
    batch = batch_for(args, shape)
    config = LlamaConfig(
        vocab_size=s["vocab"], hidden_size=s["dim"], intermediate_size=s["hidden"],
        num_hidden_layers=s["n_layers"], num_attention_heads=s["n_heads"],
        num_key_value_heads=s["n_kv_heads"], rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        max_position_embeddings=max(2048, args.seq_len),
        tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, use_cache=False,
    )
    model = LlamaForCausalLM(config).to(torch.float32).train()
    model.set_attn_implementation(args.attn)
    n_params = sum(p.numel() for p in model.parameters())

    decayed = [p for p in model.parameters() if p.ndim >= 2]
    not_decayed = [p for p in model.parameters() if p.ndim < 2]
    optim = torch.optim.AdamW(
        [dict(params=decayed, weight_decay=0.1), dict(params=not_decayed, weight_decay=0.0)],
        lr=args.lr, betas=(0.9, 0.95), eps=1e-5,
    )

    gen = torch.Generator().manual_seed(args.seed)
    total = args.warmup + args.steps
    # seq_len + 1 tokens per sequence: seq_len inputs and their seq_len next tokens.
    tokens = torch.randint(3, s["vocab"], (total, batch, args.seq_len + 1), generator=gen)

    times, losses = [], []
    for i in range(total):
        inputs, targets = tokens[i, :, :-1], tokens[i, :, 1:]
        t0 = time.perf_counter()
        logits = model(input_ids=inputs, use_cache=False).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        optim.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        losses.append(loss.item())
        if i >= args.warmup:
            times.append(dt)

    step_s = statistics.median(times)
    result = dict(
        shape=shape, params=n_params, batch=batch, seq_len=args.seq_len, threads=args.threads,
        attn=args.attn, step_ms=1000 * step_s, tok_s=batch * args.seq_len / step_s,
        loss_first=losses[0], loss_last=losses[-1], peak_rss_mib=peak_rss_mib(),
    )
    print(json.dumps(result))


def main():
    args = parse_args()
    if args.worker:
        return worker(args)

    import torch
    import transformers

    results = run_workers(__file__, args.shapes)

    env = dict(torch=torch.__version__, transformers=transformers.__version__,
               python=platform.python_version(), machine=platform.machine(),
               cpu_count=os.cpu_count(), threads=args.threads, dtype="float32", device="cpu",
               attn=args.attn, seq_len=args.seq_len, steps=args.steps, warmup=args.warmup,
               loadavg_after=[round(x, 2) for x in os.getloadavg()])
    if args.json:
        print(json.dumps(dict(env=env, results=results), indent=2))
        return

    print(f"transformers {env['transformers']} / torch {env['torch']}, f32 CPU eager, {args.threads} threads, "
          f"attn={args.attn}, seq_len {args.seq_len}, median of {args.steps} steps after {args.warmup} warm-up, "
          f"load average after run {env['loadavg_after'][0]:.2f} (other CPU load skews the numbers)")
    head = ["shape", "params", "batch×seq", "step ms", "train tok/s", "peak RSS MiB"]
    rows = [[r["shape"], f"{r['params'] / 1e6:.1f}M", f"{r['batch']}×{r['seq_len']}", f"{r['step_ms']:.0f}",
             f"{r['tok_s']:.1f}", f"{r['peak_rss_mib']:.0f}"] for r in results]
    print_table(head, rows)


if __name__ == "__main__":
    main()
