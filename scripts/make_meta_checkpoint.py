"""Write a Meta-layout Llama 2 checkpoint (params.json + consolidated.NN.pth, bf16) with
seeded random weights, for measuring the importer on realistic tensor sizes.

    python scripts/make_meta_checkpoint.py --shape 110m --shards 2 --out /tmp/llama-110m
"""
import argparse
import json
import os

import torch

SHAPES = {
    "15m": dict(dim=288, n_layers=6, n_heads=6, n_kv_heads=6, multiple_of=32),
    "110m": dict(dim=768, n_layers=12, n_heads=12, n_kv_heads=12, multiple_of=32),
    "7b": dict(dim=4096, n_layers=32, n_heads=32, n_kv_heads=32, multiple_of=256),
}


def hidden_dim(dim, multiple_of):
    hidden = int(2 * (4 * dim) / 3)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=SHAPES, default="110m")
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    p = SHAPES[args.shape]
    dim, n = p["dim"], args.shards
    head_dim = dim // p["n_heads"]
    hidden = hidden_dim(dim, p["multiple_of"])
    vocab = 32000
    g = torch.Generator().manual_seed(0)

    def w(*shape):
        return (torch.randn(*shape, generator=g) * 0.02).to(torch.bfloat16)

    full = {"tok_embeddings.weight": w(vocab, dim)}
    for i in range(p["n_layers"]):
        a = f"layers.{i}.attention."
        full[a + "wq.weight"] = w(p["n_heads"] * head_dim, dim)
        full[a + "wk.weight"] = w(p["n_kv_heads"] * head_dim, dim)
        full[a + "wv.weight"] = w(p["n_kv_heads"] * head_dim, dim)
        full[a + "wo.weight"] = w(dim, p["n_heads"] * head_dim)
        f = f"layers.{i}.feed_forward."
        full[f + "w1.weight"] = w(hidden, dim)
        full[f + "w2.weight"] = w(dim, hidden)
        full[f + "w3.weight"] = w(hidden, dim)
        full[f"layers.{i}.attention_norm.weight"] = torch.ones(dim, dtype=torch.bfloat16)
        full[f"layers.{i}.ffn_norm.weight"] = torch.ones(dim, dtype=torch.bfloat16)
    full["norm.weight"] = torch.ones(dim, dtype=torch.bfloat16)
    full["output.weight"] = w(vocab, dim)

    rows = ("wq", "wk", "wv", "w1", "w3", "output")
    cols = ("wo", "w2", "tok_embeddings")
    os.makedirs(args.out, exist_ok=True)
    for s in range(n):
        shard = {}
        for name, t in full.items():
            key = name.split(".")[-2]
            if n == 1:
                shard[name] = t  # one shard: no copy (a 7B model is 13.5 GB in bf16)
            elif key in rows:
                shard[name] = t.chunk(n, dim=0)[s].clone()
            elif key in cols:
                shard[name] = t.chunk(n, dim=1)[s].clone()
            else:
                shard[name] = t.clone()
        torch.save(shard, os.path.join(args.out, f"consolidated.{s:02d}.pth"))
    params = {k: p[k] for k in ("dim", "n_layers", "n_heads", "n_kv_heads", "multiple_of")}
    params.update(norm_eps=1e-5, vocab_size=-1)
    with open(os.path.join(args.out, "params.json"), "w") as fh:
        json.dump(params, fh)


if __name__ == "__main__":
    main()
