#!/usr/bin/env python3
"""CPU peer: llama.cpp (through pip's `llama-cpp-python`) on the tinyllamas shapes, with
random weights written as GGUF f32, f16 and q8_0 by the `gguf` package, to compare
llama2-burn's `bench` example against in the same run.

Every shape and weight type is measured in a fresh subprocess (so peak RSS is its own):
  * prefill tokens/s for a --prompt-len token prompt (median of --runs after --warmup),
  * greedy batch-1 decode tokens/s with the KV cache for --new-tokens new tokens after the
    prompt (llama.cpp's Python API decodes one sequence at a time),
  * peak RSS (VmHWM) of the subprocess.

The weights are N(0, 0.02) like transformers' and llama2-burn's initialisation (speed does
not depend on the values); the vocabulary is Meta's Llama 2 tokenizer
(tests/data/llama2-tokenizer/tokenizer.model, or --tokenizer).

Set-up (llama.cpp builds from source, a few minutes on 2 cores):
  pip install llama-cpp-python==0.3.36 gguf

Usage:
  python scripts/bench_llamacpp.py --shapes 15M,110M --types f32,f16,q8_0 --threads 2
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_hf import SHAPES, peak_rss_mib, print_table  # noqa: E402

TYPES = ("f32", "f16", "q8_0")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="15M,110M", help=f"comma list of {','.join(SHAPES)}")
    ap.add_argument("--types", default="f32,f16,q8_0", help=f"comma list of {','.join(TYPES)}")
    ap.add_argument("--prompt-len", type=int, default=256)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3, help="timed prefill runs (median reported)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--decode-runs", type=int, default=1, help="timed decode runs (median)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "tests/data/llama2-tokenizer/tokenizer.model"))
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--gguf", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def write_gguf(path, shape, qtype, tokenizer, seed, n_ctx):
    """A random-weight Llama 2 model of `shape` as GGUF, every matrix stored as `qtype`
    (norms stay f32, as llama.cpp's converter keeps them)."""
    import gguf
    from sentencepiece import SentencePieceProcessor

    s = SHAPES[shape]
    rng = np.random.default_rng(seed)
    sp = SentencePieceProcessor(model_file=tokenizer)
    if sp.vocab_size() != s["vocab"]:
        sys.exit(f"{tokenizer} has {sp.vocab_size()} pieces, the {shape} shape {s['vocab']}")
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[qtype]

    w = gguf.GGUFWriter(path, "llama")
    w.add_name(f"random-{shape}")
    w.add_context_length(n_ctx)
    w.add_embedding_length(s["dim"])
    w.add_block_count(s["n_layers"])
    w.add_feed_forward_length(s["hidden"])
    w.add_rope_dimension_count(s["dim"] // s["n_heads"])
    w.add_head_count(s["n_heads"])
    w.add_head_count_kv(s["n_kv_heads"])
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_file_type(file_type)
    w.add_vocab_size(s["vocab"])
    w.add_tokenizer_model("llama")
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        tokens.append(sp.id_to_piece(i).encode("utf-8"))
        scores.append(sp.get_score(i))
        if sp.is_unknown(i):
            types.append(gguf.TokenType.UNKNOWN)
        elif sp.is_control(i):
            types.append(gguf.TokenType.CONTROL)
        elif sp.is_byte(i):
            types.append(gguf.TokenType.BYTE)
        else:
            types.append(gguf.TokenType.NORMAL)
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)

    def matrix(name, rows, cols):
        # PyTorch layout [out, in]; GGUF records the reversed (ggml) shape itself.
        data = (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float32)
        if qtype == "f32":
            w.add_tensor(name, data)
        elif qtype == "f16":
            w.add_tensor(name, data.astype(np.float16))
        else:
            q = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)

    def norm(name, n):
        w.add_tensor(name, np.ones(n, dtype=np.float32))

    d, h, kv = s["dim"], s["hidden"], s["dim"] // s["n_heads"] * s["n_kv_heads"]
    matrix("token_embd.weight", s["vocab"], d)
    for i in range(s["n_layers"]):
        norm(f"blk.{i}.attn_norm.weight", d)
        matrix(f"blk.{i}.attn_q.weight", d, d)
        matrix(f"blk.{i}.attn_k.weight", kv, d)
        matrix(f"blk.{i}.attn_v.weight", kv, d)
        matrix(f"blk.{i}.attn_output.weight", d, d)
        norm(f"blk.{i}.ffn_norm.weight", d)
        matrix(f"blk.{i}.ffn_gate.weight", h, d)
        matrix(f"blk.{i}.ffn_down.weight", d, h)
        matrix(f"blk.{i}.ffn_up.weight", h, d)
    norm("output_norm.weight", d)
    matrix("output.weight", s["vocab"], d)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def worker(args):
    from llama_cpp import Llama

    shape, qtype = args.worker.split(":")
    s = SHAPES[shape]
    llm = Llama(model_path=args.gguf, n_ctx=args.prompt_len + args.new_tokens + 8, n_batch=512,
                n_ubatch=512, n_threads=args.threads, n_threads_batch=args.threads,
                logits_all=False, verbose=False, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    prompt = [int(t) for t in rng.integers(3, s["vocab"], args.prompt_len)]
    result = dict(shape=shape, type=qtype, threads=args.threads, prompt_len=args.prompt_len,
                  new_tokens=args.new_tokens, file_mib=os.path.getsize(args.gguf) / 2**20)

    def last_logits():
        return llm.scores[llm.n_tokens - 1]

    times = []
    for i in range(args.warmup + args.runs):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        int(np.argmax(last_logits()))
        dt = time.perf_counter() - t0
        if i >= args.warmup:
            times.append(dt)
    result["prefill_s"] = statistics.median(times)
    result["prefill_tok_s"] = args.prompt_len / result["prefill_s"]

    # greedy decode after the prompt: steps-1 single-token evaluations
    times = []
    for i in range(1 + args.decode_runs):  # the first run is a warm-up
        llm.reset()
        llm.eval(prompt)
        nxt = int(np.argmax(last_logits()))
        steps = args.new_tokens if i > 0 else min(8, args.new_tokens)
        t0 = time.perf_counter()
        for _ in range(steps - 1):
            llm.eval([nxt])
            nxt = int(np.argmax(last_logits()))
        dt = time.perf_counter() - t0
        if i > 0:
            times.append(dt / (steps - 1))
    per_step = statistics.median(times)
    result["decode"] = {"1": dict(batch=1, ms_per_step=1000 * per_step, tok_s=1 / per_step)}
    result["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(result))


def main():
    args = parse_args()
    if args.worker:
        return worker(args)
    import llama_cpp

    types = args.types.split(",")
    for t in types:
        if t not in TYPES:
            sys.exit(f"unknown type {t!r}; known: {', '.join(TYPES)}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes.split(","):
            if shape not in SHAPES:
                sys.exit(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
            for t in types:
                path = os.path.join(tmp, f"{shape}-{t}.gguf")
                write_gguf(path, shape, t, args.tokenizer, args.seed,
                           args.prompt_len + args.new_tokens + 8)
                cmd = [sys.executable, os.path.abspath(__file__), "--worker", f"{shape}:{t}",
                       "--gguf", path] + [a for a in sys.argv[1:] if a != "--json"]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    sys.stderr.write(proc.stderr)
                    sys.exit(f"worker for {shape} {t} failed")
                results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
                os.remove(path)

    env = dict(llama_cpp_python=llama_cpp.__version__, python=platform.python_version(),
               machine=platform.machine(), cpu_count=os.cpu_count(), threads=args.threads,
               loadavg_after=[round(x, 2) for x in os.getloadavg()])
    if args.json:
        print(json.dumps(dict(env=env, results=results), indent=2))
        return
    print(f"llama.cpp (llama-cpp-python {env['llama_cpp_python']}), CPU, {args.threads} threads, "
          f"prompt {args.prompt_len}, {args.new_tokens} new tokens, "
          f"load average after run {env['loadavg_after'][0]:.2f}")
    head = ["shape", "weights", "file MiB", "prefill tok/s", "decode tok/s b=1", "peak RSS MiB"]
    rows = [[r["shape"], r["type"], f"{r['file_mib']:.0f}", f"{r['prefill_tok_s']:.0f}",
             f"{r['decode']['1']['tok_s']:.1f}", f"{r['peak_rss_mib']:.0f}"] for r in results]
    print_table(head, rows)


if __name__ == "__main__":
    main()
