"""Throughput of an OpenAI-compatible server: N chat requests one after another, then all at
once (threads), greedy, `max_tokens` new tokens each with EOS ignored (vLLM's `ignore_eos`).

    python scripts/bench_serve.py --url http://127.0.0.1:8080 --requests 16 --max-tokens 64
"""

import argparse
import json
import threading
import time
import urllib.request


def chat(url, i, max_tokens):
    body = {
        "messages": [{"role": "user", "content": f"Question {i}: tell me about the number {i}."}],
        "temperature": 0,
        "max_tokens": max_tokens,
        "ignore_eos": True,
    }
    req = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)["usage"]["completion_tokens"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=64)
    a = ap.parse_args()
    chat(a.url, 0, 4)  # warm-up
    t = time.perf_counter()
    n = sum(chat(a.url, i, a.max_tokens) for i in range(a.requests))
    seq = time.perf_counter() - t
    out = [0] * a.requests
    def run(i):
        out[i] = chat(a.url, i, a.max_tokens)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(a.requests)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    conc = time.perf_counter() - t
    m = sum(out)
    print(json.dumps({
        "requests": a.requests, "max_tokens": a.max_tokens,
        "one_by_one_tok_s": round(n / seq, 1), "concurrent_tok_s": round(m / conc, 1),
        "speedup": round((m / conc) / (n / seq), 2),
    }))


if __name__ == "__main__":
    main()
