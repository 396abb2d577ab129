#!/usr/bin/env python3
"""CPU baseline: Hugging Face transformers LlamaForCausalLM (f32, random weights)
on the tinyllamas shapes, to compare llama2-burn's throughput against.

For each shape (each in a fresh subprocess, so peak RSS is per shape):
  * prefill tokens/s for a --prompt-len token prompt (median of --runs after --warmup),
  * time to first token (prefill with KV cache + argmax, median),
  * greedy decode tokens/s with the KV cache for --new-tokens new tokens after the
    prompt, for every batch size in --batch (tokens/s counts all sequences),
  * peak RSS (VmHWM) of the subprocess.

Usage:
  python scripts/bench_hf.py                       # 15M and 110M, batch 1
  python scripts/bench_hf.py --shapes 15M --batch 1,4,16 --json
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

SHAPES = {
    # tinyllamas (karpathy/llama2.c) shapes
    "15M": dict(dim=288, n_layers=6, n_heads=6, n_kv_heads=6, hidden=768, vocab=32000),
    "42M": dict(dim=512, n_layers=8, n_heads=8, n_kv_heads=8, hidden=1376, vocab=32000),
    "110M": dict(dim=768, n_layers=12, n_heads=12, n_kv_heads=12, hidden=2048, vocab=32000),
}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="15M,110M", help=f"comma list of {','.join(SHAPES)}")
    ap.add_argument("--batch", default="1", help="comma list of decode batch sizes (default 1)")
    ap.add_argument("--prompt-len", type=int, default=256)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3, help="timed prefill runs (median reported)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--decode-runs", type=int, default=1, help="timed decode runs per batch size (median)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"], help="transformers attention kernel")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def peak_rss_mib():
    # VmHWM starts afresh at exec; getrusage's ru_maxrss keeps the parent's peak on Linux
    # (the parent has imported torch).
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024


def print_table(head, rows):
    """Prints `rows` (lists of strings) under `head`, columns right-aligned."""
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    print(" | ".join(h.ljust(w) for h, w in zip(head, widths)))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(c.rjust(w) for c, w in zip(row, widths)))


def run_workers(script, shapes):
    """Runs `script` again once per comma-separated shape, with `--worker <shape>` and the
    current arguments (less `--json`), so that each shape's peak memory is its own; returns the
    JSON line each worker prints last."""
    results = []
    for shape in shapes.split(","):
        if shape not in SHAPES:
            sys.exit(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
        cmd = [sys.executable, os.path.abspath(script), "--worker", shape] + [
            a for a in sys.argv[1:] if a != "--json"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            sys.exit(f"worker for {shape} failed")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return results


def worker(args):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    s = SHAPES[args.worker]
    config = LlamaConfig(
        vocab_size=s["vocab"], hidden_size=s["dim"], intermediate_size=s["hidden"],
        num_hidden_layers=s["n_layers"], num_attention_heads=s["n_heads"],
        num_key_value_heads=s["n_kv_heads"], rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        max_position_embeddings=max(2048, args.prompt_len + args.new_tokens),
        tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
    )
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    model.set_attn_implementation(args.attn)
    n_params = sum(p.numel() for p in model.parameters())
    # transformers >= 5.2x names the KV cache argument/output `cache`; older versions
    # use `past_key_values`.
    import inspect

    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def forward(input_ids, kv=None, **kw):
        if kv is not None:
            kw[cache_kw] = kv
        out = model(input_ids=input_ids, use_cache=True, **kw)
        return out, getattr(out, cache_kw)
    gen = torch.Generator().manual_seed(args.seed)

    def prompt(b):
        return torch.randint(3, s["vocab"], (b, args.prompt_len), generator=gen)

    result = dict(shape=args.worker, params=n_params, threads=args.threads, attn=args.attn,
                  prompt_len=args.prompt_len, new_tokens=args.new_tokens)

    with torch.inference_mode():
        ids = prompt(1)
        # prefill (full forward over the prompt, filling the KV cache)
        times = []
        for i in range(args.warmup + args.runs):
            t0 = time.perf_counter()
            forward(ids)
            dt = time.perf_counter() - t0
            if i >= args.warmup:
                times.append(dt)
        result["prefill_s"] = statistics.median(times)
        result["prefill_tok_s"] = args.prompt_len / result["prefill_s"]

        # time to first token: prefill + argmax of the last position
        times = []
        for i in range(args.warmup + args.runs):
            t0 = time.perf_counter()
            out, _ = forward(ids, logits_to_keep=1)
            out.logits[:, -1].argmax(-1)
            dt = time.perf_counter() - t0
            if i >= args.warmup:
                times.append(dt)
        result["ttft_ms"] = 1000 * statistics.median(times)

        # greedy decode with the KV cache, one token per step
        result["decode"] = {}
        for b in [int(x) for x in args.batch.split(",")]:
            ids = prompt(b)
            times = []
            for i in range(1 + args.decode_runs):  # first run is warmup
                out, past = forward(ids, logits_to_keep=1)
                nxt = out.logits[:, -1].argmax(-1, keepdim=True)
                steps = args.new_tokens if i > 0 else min(8, args.new_tokens)
                t0 = time.perf_counter()
                for _ in range(steps - 1):
                    out, past = forward(nxt, past)
                    nxt = out.logits[:, -1].argmax(-1, keepdim=True)
                dt = time.perf_counter() - t0
                if i > 0:
                    # steps-1 forward passes produce steps-1 tokens per sequence
                    times.append(dt / (steps - 1))
            per_step = statistics.median(times)
            result["decode"][str(b)] = dict(batch=b, ms_per_step=1000 * per_step, tok_s=b / per_step)

    result["peak_rss_mib"] = peak_rss_mib()
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
               loadavg_after=[round(x, 2) for x in os.getloadavg()])
    if args.json:
        print(json.dumps(dict(env=env, results=results), indent=2))
        return

    batches = [int(x) for x in args.batch.split(",")]
    print(f"transformers {env['transformers']} / torch {env['torch']}, f32 CPU, {args.threads} threads, "
          f"attn={args.attn}, prompt {args.prompt_len}, {args.new_tokens} new tokens, "
          f"load average after run {env['loadavg_after'][0]:.2f} (other CPU load skews the numbers)")
    head = ["shape", "params", "prefill tok/s", "TTFT ms"] + [f"decode tok/s b={b}" for b in batches] + [
        "peak RSS MiB"]
    rows = []
    for r in results:
        rows.append([r["shape"], f"{r['params'] / 1e6:.1f}M", f"{r['prefill_tok_s']:.0f}", f"{r['ttft_ms']:.1f}"]
                    + [f"{r['decode'][str(b)]['tok_s']:.1f}" for b in batches] + [f"{r['peak_rss_mib']:.0f}"])
    print_table(head, rows)


if __name__ == "__main__":
    main()
