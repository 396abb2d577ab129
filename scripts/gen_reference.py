#!/usr/bin/env python3
"""Generate the reference data under tests/data/ used by the Rust tests.

Produces (see tests/data/README.md for a full description):

  tests/data/tiny/meta-1/         Meta layout, 1 shard, bf16 (params.json + consolidated.00.pth)
  tests/data/tiny/meta-2/         Meta layout, 2 model-parallel shards, bf16
  tests/data/tiny/hf/             Hugging Face layout, single model.safetensors, f32, classic config.json
  tests/data/tiny/hf-sharded/     Hugging Face layout, index + several shards, bf16, transformers-5 config.json
  tests/data/tiny/reference.safetensors
                                  logits / greedy tokens from transformers' LlamaForCausalLM
  tests/data/tiny/generation.safetensors
                                  transformers' greedy continuations of ragged prompts
  tests/data/tiny-chat/           vocab-32000 tiny model (Meta layout, bf16) for the real Llama 2
                                  tokenizer, with generation.safetensors (greedy chat/text outputs)
  tests/data/micro/...            positive controls for the bad-input corpus
  tests/data/bad/<case>/          malformed checkpoints, described by tests/data/bad/cases.json

Everything is deterministic: running the script twice yields byte-identical files.
Usage: python scripts/gen_reference.py
"""

import copy
import json
import os
import pickletools
import shutil
import sys
import zipfile
from collections import OrderedDict

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep scripts/ free of __pycache__
sys.path.insert(0, HERE)
import meta_model  # noqa: E402  (transcription of Meta's llama/model.py)

ROOT = os.path.dirname(HERE)
DATA = os.path.join(ROOT, "tests", "data")
TINY_DIR = os.path.join(DATA, "tiny")
TINY_CHAT_DIR = os.path.join(DATA, "tiny-chat")
LLAMA_TOKENIZER = os.path.join(DATA, "llama2-tokenizer", "tokenizer.model")
MICRO_DIR = os.path.join(DATA, "micro")
BAD_DIR = os.path.join(DATA, "bad")

# The tiny GQA model every positive test uses.
TINY = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=512, multiple_of=32,
            ffn_dim_multiplier=None, norm_eps=1e-5, rope_theta=10000.0)
# An even smaller model with the same structure (GQA 4/2, 2 layers) from which the
# bad-input corpus is derived, so that ~25 directories stay within a few hundred KB.
MICRO = dict(dim=16, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=32, multiple_of=32,
             ffn_dim_multiplier=None, norm_eps=1e-5, rope_theta=10000.0)
# A model with Llama 2's 32000-token vocabulary, as small as the embedding allows
# (2 x 32000 x 16 bf16 values = 2 MB), so examples and chat tests can use the real tokenizer.
TINY_CHAT = dict(dim=16, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=32000, multiple_of=32,
                 ffn_dim_multiplier=None, norm_eps=1e-5, rope_theta=10000.0)
# Multi-head (n_kv_heads == n_heads) variant of MICRO, for a 4-way shard split.
MICRO_MHA = dict(MICRO, n_kv_heads=None)

# Weight scales: large enough that logits spread over several units and greedy
# decoding does not collapse onto one token.
EMB_STD = 1.0
LINEAR_STD = 0.15
OUTPUT_STD = 0.3
NORM_JITTER = 0.1

PROMPT_LENGTHS = [1, 5, 17, 64]
GREEDY_PROMPT_INDEX = 1  # the 5-token prompt
GREEDY_NEW_TOKENS = 20
BATCH_SHAPE = (2, 9)
# Ragged prompts for batched generation: slices of prompt_3.ids (start, length).
RAGGED_SLICES = [(0, 3), (3, 7), (10, 12)]
RAGGED_NEW_TOKENS = 16
CHAT_NEW_TOKENS = 12
CHAT_DIALOG = [{"role": "system", "content": "Answer briefly."},
               {"role": "user", "content": "Once upon a time, what happened? été 日本"}]
CHAT_TEXT_PROMPT = "Once upon a time"
TOL = 1e-4

COLUMN_PARALLEL = ("attention.wq.", "attention.wk.", "attention.wv.", "feed_forward.w1.",
                   "feed_forward.w3.", "output.")
ROW_PARALLEL = ("attention.wo.", "feed_forward.w2.")


def log(*args):
    print(*args, flush=True)


def ffn_hidden(cfg):
    hidden = 4 * cfg["dim"]
    hidden = int(2 * hidden / 3)
    if cfg["ffn_dim_multiplier"] is not None:
        hidden = int(cfg["ffn_dim_multiplier"] * hidden)
    m = cfg["multiple_of"]
    return m * ((hidden + m - 1) // m)


def kv_heads(cfg):
    return cfg["n_kv_heads"] if cfg["n_kv_heads"] is not None else cfg["n_heads"]


def bf16_round(t):
    return t.to(torch.bfloat16).to(torch.float32)


# --------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------

def make_meta_weights(cfg, seed):
    """Seeded random weights in Meta's naming and key order, f32 values that are exactly
    representable in bf16. Does not include rope.freqs."""
    torch.manual_seed(seed)
    dim, vocab = cfg["dim"], cfg["vocab_size"]
    head_dim = dim // cfg["n_heads"]
    kv_dim = kv_heads(cfg) * head_dim
    hidden = ffn_hidden(cfg)

    def lin(out_f, in_f, std=LINEAR_STD):
        return bf16_round(torch.randn(out_f, in_f) * std)

    def norm():
        return bf16_round(1.0 + NORM_JITTER * torch.randn(dim))

    sd = OrderedDict()
    sd["tok_embeddings.weight"] = bf16_round(torch.randn(vocab, dim) * EMB_STD)
    sd["norm.weight"] = norm()
    sd["output.weight"] = lin(vocab, dim, OUTPUT_STD)
    for i in range(cfg["n_layers"]):
        p = f"layers.{i}."
        sd[p + "attention.wq.weight"] = lin(cfg["n_heads"] * head_dim, dim)
        sd[p + "attention.wk.weight"] = lin(kv_dim, dim)
        sd[p + "attention.wv.weight"] = lin(kv_dim, dim)
        sd[p + "attention.wo.weight"] = lin(dim, cfg["n_heads"] * head_dim)
        sd[p + "feed_forward.w1.weight"] = lin(hidden, dim)
        sd[p + "feed_forward.w2.weight"] = lin(dim, hidden)
        sd[p + "feed_forward.w3.weight"] = lin(hidden, dim)
        sd[p + "attention_norm.weight"] = norm()
        sd[p + "ffn_norm.weight"] = norm()
    return sd


def rope_freqs(cfg):
    head_dim = cfg["dim"] // cfg["n_heads"]
    theta = cfg["rope_theta"]
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2)[: head_dim // 2].float() / head_dim))
    return freqs.to(torch.bfloat16)


def to_meta_checkpoint(sd, cfg):
    """bf16 state dict as Meta ships it (every tensor owns its storage), plus rope.freqs."""
    out = OrderedDict((k, v.to(torch.bfloat16).contiguous().clone()) for k, v in sd.items())
    out["rope.freqs"] = rope_freqs(cfg)
    return out


def shard_axis(key):
    """Axis along which fairscale splits a tensor, or None if it is replicated."""
    if key == "tok_embeddings.weight":
        return 1  # ParallelEmbedding splits embedding_dim
    if any(s in key for s in ROW_PARALLEL):
        return 1  # RowParallelLinear: [out, in] split on in
    if any(key.startswith(s) or ("." + s) in key for s in COLUMN_PARALLEL):
        return 0  # ColumnParallelLinear: [out, in] split on out
    return None  # norms, rope.freqs


def split_meta(ckpt, n, floor=False):
    """Split a Meta checkpoint into n model-parallel shards (fairscale rules). With
    floor=True each shard gets size//n along the split axis (used to fake a bad split)."""
    shards = [OrderedDict() for _ in range(n)]
    for k, v in ckpt.items():
        ax = shard_axis(k)
        if ax is None:
            for s in shards:
                s[k] = v.clone()
            continue
        size = v.shape[ax]
        if not floor:
            assert size % n == 0, (k, size, n)
        step = size // n
        for r, s in enumerate(shards):
            s[k] = v.narrow(ax, r * step, step).contiguous().clone()
    return shards


def merge_meta(shards):
    """Inverse of split_meta."""
    out = OrderedDict()
    for k in shards[0]:
        ax = shard_axis(k)
        if ax is None:
            for s in shards[1:]:
                assert torch.equal(s[k], shards[0][k]), k
            out[k] = shards[0][k]
        else:
            out[k] = torch.cat([s[k] for s in shards], dim=ax)
    return out


def meta_params_json(cfg, vocab_size):
    p = OrderedDict()
    p["dim"] = cfg["dim"]
    p["multiple_of"] = cfg["multiple_of"]
    if cfg["ffn_dim_multiplier"] is not None:
        p["ffn_dim_multiplier"] = cfg["ffn_dim_multiplier"]
    p["n_heads"] = cfg["n_heads"]
    if cfg["n_kv_heads"] is not None:
        p["n_kv_heads"] = cfg["n_kv_heads"]
    p["n_layers"] = cfg["n_layers"]
    p["norm_eps"] = cfg["norm_eps"]
    p["vocab_size"] = vocab_size
    return p


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)  # Meta's params.json: one line, ", " / ": " separators, no newline


def write_json_pretty(path, obj):
    with open(path, "w") as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_meta_dir(d, cfg, shards, vocab_size_field):
    os.makedirs(d, exist_ok=True)
    write_json(os.path.join(d, "params.json"), meta_params_json(cfg, vocab_size_field))
    for r, s in enumerate(shards):
        torch.save(s, os.path.join(d, f"consolidated.{r:02d}.pth"))


def load_meta_dir(d):
    files = sorted(f for f in os.listdir(d) if f.startswith("consolidated.") and f.endswith(".pth"))
    shards = [torch.load(os.path.join(d, f), map_location="cpu", weights_only=True) for f in files]
    with open(os.path.join(d, "params.json")) as f:
        params = json.load(f)
    return params, shards


# --------------------------------------------------------------------------------------
# Hugging Face
# --------------------------------------------------------------------------------------

def permute(w, n_heads, dim1, dim2):
    # from transformers/models/llama/convert_llama_weights_to_hf.py
    return w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)


def meta_to_hf(sd, cfg):
    dim = cfg["dim"]
    head_dim = dim // cfg["n_heads"]
    nkv = kv_heads(cfg)
    out = OrderedDict()
    out["model.embed_tokens.weight"] = sd["tok_embeddings.weight"]
    for i in range(cfg["n_layers"]):
        m, h = f"layers.{i}.", f"model.layers.{i}."
        out[h + "self_attn.q_proj.weight"] = permute(sd[m + "attention.wq.weight"], cfg["n_heads"], dim, dim)
        out[h + "self_attn.k_proj.weight"] = permute(sd[m + "attention.wk.weight"], nkv, nkv * head_dim, dim)
        out[h + "self_attn.v_proj.weight"] = sd[m + "attention.wv.weight"]
        out[h + "self_attn.o_proj.weight"] = sd[m + "attention.wo.weight"]
        out[h + "mlp.gate_proj.weight"] = sd[m + "feed_forward.w1.weight"]
        out[h + "mlp.down_proj.weight"] = sd[m + "feed_forward.w2.weight"]
        out[h + "mlp.up_proj.weight"] = sd[m + "feed_forward.w3.weight"]
        out[h + "input_layernorm.weight"] = sd[m + "attention_norm.weight"]
        out[h + "post_attention_layernorm.weight"] = sd[m + "ffn_norm.weight"]
    out["model.norm.weight"] = sd["norm.weight"]
    out["lm_head.weight"] = sd["output.weight"]
    return out


def hf_config(cfg):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=cfg["vocab_size"],
        hidden_size=cfg["dim"],
        intermediate_size=ffn_hidden(cfg),
        num_hidden_layers=cfg["n_layers"],
        num_attention_heads=cfg["n_heads"],
        num_key_value_heads=kv_heads(cfg),
        rms_norm_eps=cfg["norm_eps"],
        rope_parameters={"rope_type": "default", "rope_theta": cfg["rope_theta"]},
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        attention_bias=False,
        mlp_bias=False,
    )


def build_hf_model(sd, cfg):
    from transformers import LlamaForCausalLM

    config = hf_config(cfg)
    model = LlamaForCausalLM(config).to(torch.float32)
    missing, unexpected = model.load_state_dict(meta_to_hf(sd, cfg), strict=True)
    assert not missing and not unexpected
    model.set_attn_implementation("eager")
    model.eval()
    return model


def classic_config(cfg, torch_dtype):
    """config.json in the pre-transformers-5 style of the Llama-2 hub checkpoints:
    `rope_theta` + `rope_scaling: null` + `torch_dtype`, no `rope_parameters`/`dtype`/`head_dim`."""
    import transformers

    c = OrderedDict()
    c["architectures"] = ["LlamaForCausalLM"]
    c["attention_bias"] = False
    c["bos_token_id"] = 1
    c["eos_token_id"] = 2
    c["hidden_act"] = "silu"
    c["hidden_size"] = cfg["dim"]
    c["initializer_range"] = 0.02
    c["intermediate_size"] = ffn_hidden(cfg)
    c["max_position_embeddings"] = 4096
    c["model_type"] = "llama"
    c["num_attention_heads"] = cfg["n_heads"]
    c["num_hidden_layers"] = cfg["n_layers"]
    c["num_key_value_heads"] = kv_heads(cfg)
    c["pretraining_tp"] = 1
    c["rms_norm_eps"] = cfg["norm_eps"]
    c["rope_scaling"] = None
    c["rope_theta"] = cfg["rope_theta"]
    c["tie_word_embeddings"] = False
    c["torch_dtype"] = torch_dtype
    c["transformers_version"] = transformers.__version__
    c["use_cache"] = True
    c["vocab_size"] = cfg["vocab_size"]
    return c


def save_hf(model, d, cfg, dtype, classic, max_shard_size=None):
    m = model if dtype == torch.float32 else copy.deepcopy(model).to(dtype)
    kwargs = dict(safe_serialization=True)
    if max_shard_size is not None:
        kwargs["max_shard_size"] = max_shard_size
    m.save_pretrained(d, **kwargs)
    if classic:
        write_json_pretty(os.path.join(d, "config.json"),
                          classic_config(cfg, str(dtype).replace("torch.", "")))


def load_hf_dir(d):
    from transformers import LlamaForCausalLM

    m = LlamaForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
    m.eval()
    return m


# --------------------------------------------------------------------------------------
# Meta transcription
# --------------------------------------------------------------------------------------

def build_meta_model(params, shards, max_batch_size=2, max_seq_len=128):
    """Load a Meta checkpoint directory the way Llama.build does (strict=False)."""
    merged = merge_meta(shards) if len(shards) > 1 else shards[0]
    args = meta_model.ModelArgs(max_seq_len=max_seq_len, max_batch_size=max_batch_size, **params)
    args.vocab_size = merged["tok_embeddings.weight"].shape[0]
    model = meta_model.Transformer(args)
    missing, unexpected = model.load_state_dict(merged, strict=False)
    assert not missing, missing
    assert unexpected == ["rope.freqs"], unexpected
    model.eval()
    return model


def max_diff(a, b):
    return (a.float() - b.float()).abs().max().item()


# --------------------------------------------------------------------------------------
# Tiny model + reference outputs
# --------------------------------------------------------------------------------------

def gen_tiny():
    cfg = TINY
    log(f"== tiny model: {cfg}, ffn hidden {ffn_hidden(cfg)}")
    assert ffn_hidden(cfg) == 192
    sd = make_meta_weights(cfg, seed=0)
    ckpt = to_meta_checkpoint(sd, cfg)

    # Meta layouts
    write_meta_dir(os.path.join(TINY_DIR, "meta-1"), cfg, [ckpt], -1)
    write_meta_dir(os.path.join(TINY_DIR, "meta-2"), cfg, split_meta(ckpt, 2), cfg["vocab_size"])

    # HF layouts
    model = build_hf_model(sd, cfg)
    hf_dir = os.path.join(TINY_DIR, "hf")
    hf_sharded_dir = os.path.join(TINY_DIR, "hf-sharded")
    save_hf(model, hf_dir, cfg, torch.float32, classic=True)
    save_hf(model, hf_sharded_dir, cfg, torch.bfloat16, classic=False, max_shard_size="150KB")

    for d in (hf_dir, hf_sharded_dir):
        with open(os.path.join(d, "config.json")) as f:
            c = json.load(f)
        log(f"{os.path.relpath(d, ROOT)}/config.json keys: {sorted(c)}")
        log(f"   rope_theta={c.get('rope_theta')!r} rope_parameters={c.get('rope_parameters')!r} "
            f"dtype={c.get('dtype')!r} torch_dtype={c.get('torch_dtype')!r}")
    with open(os.path.join(hf_dir, "config.json")) as f:
        c = json.load(f)
    assert "rope_theta" in c and "rope_parameters" not in c and "torch_dtype" in c and "dtype" not in c
    with open(os.path.join(hf_sharded_dir, "config.json")) as f:
        c = json.load(f)
    assert c["rope_parameters"] == {"rope_type": "default", "rope_theta": 10000.0}, c
    assert c["dtype"] == "bfloat16", c
    shard_files = sorted(f for f in os.listdir(hf_sharded_dir) if f.endswith(".safetensors"))
    assert len(shard_files) >= 2 and os.path.exists(
        os.path.join(hf_sharded_dir, "model.safetensors.index.json")), shard_files
    log(f"hf-sharded shards: {shard_files}")

    # ---- reference outputs from transformers ----
    gen = torch.Generator().manual_seed(1234)
    prompts = [torch.randint(3, cfg["vocab_size"], (n,), generator=gen) for n in PROMPT_LENGTHS]
    batch_ids = torch.randint(3, cfg["vocab_size"], BATCH_SHAPE, generator=gen)
    assert not torch.equal(batch_ids[0], batch_ids[1])

    ref = OrderedDict()
    with torch.no_grad():
        for i, p in enumerate(prompts):
            ref[f"prompt_{i}.ids"] = p.to(torch.int64).contiguous()
            ref[f"prompt_{i}.logits"] = model(p[None]).logits[0].float().contiguous()
        ref["batch.ids"] = batch_ids.to(torch.int64).contiguous()
        ref["batch.logits"] = model(batch_ids, attention_mask=torch.ones_like(batch_ids)).logits.float().contiguous()

    greedy_prompt = prompts[GREEDY_PROMPT_INDEX]
    gen_model = copy.deepcopy(model)
    gen_model.generation_config.eos_token_id = None
    gen_model.generation_config.pad_token_id = 0
    with torch.no_grad():
        out = gen_model.generate(greedy_prompt[None], attention_mask=torch.ones_like(greedy_prompt[None]),
                                 do_sample=False, max_new_tokens=GREEDY_NEW_TOKENS,
                                 eos_token_id=None, pad_token_id=0)
    assert out.shape == (1, len(greedy_prompt) + GREEDY_NEW_TOKENS), out.shape
    assert torch.equal(out[0, : len(greedy_prompt)], greedy_prompt)
    greedy = out[0, len(greedy_prompt):].to(torch.int64).contiguous()
    ref["greedy.prompt"] = greedy_prompt.to(torch.int64).clone()
    ref["greedy.output"] = greedy
    n_unique = len(set(greedy.tolist()))
    log(f"greedy prompt {greedy_prompt.tolist()} -> {greedy.tolist()} ({n_unique} distinct)")
    assert n_unique > 5, "greedy decode collapsed; raise the weight scales"

    # logit spread
    l3 = ref["prompt_3.logits"]
    spread = (l3.max(-1).values - l3.min(-1).values).mean().item()
    log(f"logits: std {l3.std().item():.3f}, mean per-position max-min {spread:.2f}")
    assert spread > 4.0

    ref_path = os.path.join(TINY_DIR, "reference.safetensors")
    # Only one metadata entry: safetensors serialises __metadata__ from a hash map, so
    # several entries would come out in a random order and break byte-reproducibility.
    save_file(ref, ref_path, metadata={"format": "pt"})

    # ---- checks ----
    check_tiny(cfg, sd, ckpt, model, ref, hf_dir, hf_sharded_dir)
    gen_ragged(model, ref)
    return ref


def greedy_continuation(model, prompt, n):
    """transformers' greedy decode with EOS disabled; also returns the smallest
    top-1/top-2 logit margin over the steps."""
    m = copy.deepcopy(model)
    m.generation_config.eos_token_id = None
    m.generation_config.pad_token_id = 0
    with torch.no_grad():
        out = m.generate(prompt[None], attention_mask=torch.ones_like(prompt[None]), do_sample=False,
                         max_new_tokens=n, eos_token_id=None, pad_token_id=0,
                         output_scores=True, return_dict_in_generate=True)
    seq = out.sequences[0]
    assert torch.equal(seq[: len(prompt)], prompt)
    margins = [float((lambda t: t[0] - t[1])(s[0].topk(2).values)) for s in out.scores]
    return seq[len(prompt):].to(torch.int64).contiguous(), min(margins)


def gen_ragged(model, ref):
    """Greedy continuations of prompts of different lengths, for batched generation."""
    log("== ragged greedy generation")
    base = ref["prompt_3.ids"]
    out = OrderedDict()
    for i, (start, n) in enumerate(RAGGED_SLICES):
        prompt = base[start:start + n].contiguous()
        toks, margin = greedy_continuation(model, prompt, RAGGED_NEW_TOKENS)
        log(f"ragged {i}: {prompt.tolist()} -> {toks.tolist()} (min margin {margin:.4f})")
        assert margin > 1e-2, "greedy step too close to a tie"
        out[f"ragged_{i}.prompt"] = prompt
        out[f"ragged_{i}.output"] = toks
    save_file(out, os.path.join(TINY_DIR, "generation.safetensors"), metadata={"format": "pt"})


def gen_tiny_chat():
    """The vocab-32000 tiny model and greedy outputs for a chat dialog and a text prompt
    encoded with the real Llama 2 tokenizer (Meta's chat_completion prompt building)."""
    import gen_chat_cases

    cfg = TINY_CHAT
    log(f"== tiny-chat model: {cfg}, ffn hidden {ffn_hidden(cfg)}")
    sd = make_meta_weights(cfg, seed=5)
    ckpt = to_meta_checkpoint(sd, cfg)
    write_meta_dir(TINY_CHAT_DIR, cfg, [ckpt], -1)
    model = build_hf_model(sd, cfg)

    tok = gen_chat_cases.Tokenizer(LLAMA_TOKENIZER)
    prompts, unsafe = gen_chat_cases.meta_chat_tokens(tok, [CHAT_DIALOG])
    assert unsafe == [False]
    out = OrderedDict()
    cases = [("dialog", prompts[0]), ("text", tok.encode(CHAT_TEXT_PROMPT, bos=True, eos=False))]
    for name, ids in cases:
        prompt = torch.tensor(ids, dtype=torch.int64)
        toks, margin = greedy_continuation(model, prompt, CHAT_NEW_TOKENS)
        log(f"tiny-chat {name}: {len(ids)} prompt tokens -> {toks.tolist()} (min margin {margin:.4f})")
        assert margin > 1e-2, "greedy step too close to a tie"
        out[f"{name}.prompt"] = prompt
        out[f"{name}.output"] = toks
    save_file(out, os.path.join(TINY_CHAT_DIR, "generation.safetensors"), metadata={"format": "pt"})
    size = sum(os.path.getsize(os.path.join(TINY_CHAT_DIR, f)) for f in os.listdir(TINY_CHAT_DIR))
    log(f"tests/data/tiny-chat: {size / 1024:.1f} KiB")
    assert size < 2.5 * 1024 * 1024


def check_tiny(cfg, sd, ckpt, model, ref, hf_dir, hf_sharded_dir):
    log("== checks")
    # 1. on-disk Meta checkpoints round-trip and agree with each other
    p1, s1 = load_meta_dir(os.path.join(TINY_DIR, "meta-1"))
    p2, s2 = load_meta_dir(os.path.join(TINY_DIR, "meta-2"))
    assert len(s1) == 1 and len(s2) == 2
    for k, v in ckpt.items():
        assert s1[0][k].dtype == torch.bfloat16 and torch.equal(s1[0][k], v), k
    merged2 = merge_meta(s2)
    assert list(merged2) == list(s1[0])
    for k in merged2:
        assert torch.equal(merged2[k], s1[0][k]), k
    log(f"meta-1 keys ({len(s1[0])}): first {list(s1[0])[:3]}, last {list(s1[0])[-1]}; "
        f"rope.freqs {s1[0]['rope.freqs'].dtype} {tuple(s1[0]['rope.freqs'].shape)}")
    log("meta-2 shard shapes: " + ", ".join(
        f"{k} {tuple(s2[0][k].shape)}" for k in ("tok_embeddings.weight", "layers.0.attention.wq.weight",
                                                  "layers.0.attention.wk.weight", "layers.0.attention.wo.weight",
                                                  "layers.0.feed_forward.w2.weight", "output.weight", "norm.weight")))

    # 2. HF dirs reload to identical logits
    ids = ref["prompt_3.ids"][None]
    with torch.no_grad():
        for d in (hf_dir, hf_sharded_dir):
            m = load_hf_dir(d)
            assert m.config.rope_parameters["rope_theta"] == cfg["rope_theta"], m.config.rope_parameters
            assert m.config.num_key_value_heads == kv_heads(cfg)
            diff = max_diff(m(ids).logits[0], ref["prompt_3.logits"])
            log(f"reload {os.path.relpath(d, ROOT)}: max |logits - reference| = {diff:.3g}")
            assert diff == 0.0 or diff < 1e-6
    # safetensors dtypes
    with safe_open(os.path.join(hf_dir, "model.safetensors"), "pt") as f:
        assert all(f.get_slice(k).get_dtype() == "F32" for k in f.keys())
    for fn in os.listdir(hf_sharded_dir):
        if fn.endswith(".safetensors"):
            with safe_open(os.path.join(hf_sharded_dir, fn), "pt") as f:
                assert all(f.get_slice(k).get_dtype() == "BF16" for k in f.keys())

    # 3. Meta transcription (from meta-1 and meta-2 files) vs transformers
    worst = 0.0
    for name, (params, shards) in (("meta-1", (p1, s1)), ("meta-2", (p2, s2))):
        mm = build_meta_model(params, shards)
        for i in range(len(PROMPT_LENGTHS)):
            d = max_diff(mm(ref[f"prompt_{i}.ids"][None], 0)[0], ref[f"prompt_{i}.logits"])
            worst = max(worst, d)
            log(f"{name} full forward prompt_{i} (len {PROMPT_LENGTHS[i]}): max abs diff vs transformers {d:.3g}")
            assert d < TOL
        d = max_diff(mm(ref["batch.ids"], 0), ref["batch.logits"])
        worst = max(worst, d)
        log(f"{name} batch forward [2, 9]: max abs diff {d:.3g}")
        assert d < TOL

    # 4. incremental decoding with the KV cache (start_pos) matches the full forward
    mm = build_meta_model(p1, s1)
    for i in (2, 3):
        toks = ref[f"prompt_{i}.ids"][None]
        n = toks.shape[1]
        for chunks in ([n // 2] + [1] * (n - n // 2), [3, 4] + [1] * 3 + [n - 10]):
            rows, pos = [], 0
            for c in chunks:
                rows.append(mm(toks[:, pos: pos + c], pos)[0])
                pos += c
            assert pos == n
            d = max_diff(torch.cat(rows), ref[f"prompt_{i}.logits"])
            worst = max(worst, d)
            log(f"meta incremental prompt_{i} chunks {chunks[:6]}{'...' if len(chunks) > 6 else ''}: max abs diff {d:.3g}")
            assert d < TOL

    # 5. greedy decode with the Meta transcription (prompt, then one token at a time)
    prompt = ref["greedy.prompt"][None]
    logits = mm(prompt, 0)[:, -1]
    pos, toks, margins = prompt.shape[1], [], []
    for _ in range(GREEDY_NEW_TOKENS):
        top2 = logits[0].topk(2).values
        margins.append((top2[0] - top2[1]).item())
        nxt = logits.argmax(-1)
        toks.append(nxt.item())
        logits = mm(nxt[:, None], pos)[:, -1]
        pos += 1
    assert toks == ref["greedy.output"].tolist(), (toks, ref["greedy.output"].tolist())
    log(f"meta greedy matches transformers.generate; smallest top1-top2 logit margin {min(margins):.4f}")
    assert min(margins) > 1e-3
    # and without a cache: argmax of the full forward over prompt+output
    full = torch.cat([ref["greedy.prompt"], ref["greedy.output"]])[None]
    with torch.no_grad():
        am = model(full).logits[0].argmax(-1)
    p = ref["greedy.prompt"].shape[0]
    assert torch.equal(am[p - 1: -1], ref["greedy.output"])
    log(f"MAX ABS DIFF Meta transcription vs transformers (all checks): {worst:.3g}")


# --------------------------------------------------------------------------------------
# Bad-input corpus
# --------------------------------------------------------------------------------------

class _Pwn:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def gen_bad():
    cfg = MICRO
    log(f"== bad-input corpus (micro model {cfg}, ffn hidden {ffn_hidden(cfg)})")
    sd = make_meta_weights(cfg, seed=1)
    ckpt = to_meta_checkpoint(sd, cfg)
    mha_ckpt = to_meta_checkpoint(make_meta_weights(MICRO_MHA, seed=2), MICRO_MHA)

    # positive controls: the unmodified bases
    write_meta_dir(os.path.join(MICRO_DIR, "meta-1"), cfg, [ckpt], -1)
    write_meta_dir(os.path.join(MICRO_DIR, "meta-2"), cfg, split_meta(ckpt, 2), cfg["vocab_size"])
    write_meta_dir(os.path.join(MICRO_DIR, "meta-4-mha"), MICRO_MHA, split_meta(mha_ckpt, 4), -1)
    model = build_hf_model(sd, cfg)
    save_hf(model, os.path.join(MICRO_DIR, "hf"), cfg, torch.float32, classic=False)
    save_hf(model, os.path.join(MICRO_DIR, "hf-sharded"), cfg, torch.float32, classic=False,
            max_shard_size="20KB")
    # controls load and agree
    ids = torch.arange(3, 13)[None]
    with torch.no_grad():
        want = model(ids).logits[0]
        for d in ("meta-1", "meta-2", "meta-4-mha"):
            params, shards = load_meta_dir(os.path.join(MICRO_DIR, d))
            if d != "meta-4-mha":
                assert max_diff(build_meta_model(params, shards)(ids, 0)[0], want) < TOL
            else:
                build_meta_model(params, shards)
        for d in ("hf", "hf-sharded"):
            assert max_diff(load_hf_dir(os.path.join(MICRO_DIR, d))(ids).logits[0], want) < 1e-6
    hf_files = sorted(os.listdir(os.path.join(MICRO_DIR, "hf-sharded")))
    hf_shards = [f for f in hf_files if f.startswith("model-")]
    assert len(hf_shards) >= 2, hf_files

    cases = []

    def case(name, layout, expect, why):
        d = os.path.join(BAD_DIR, name)
        os.makedirs(d)
        cases.append(OrderedDict(case=name, layout=layout, expect=expect, why=why))
        return d

    def meta_case(name, expect, why, shards=None, params=None, raw_params=None, skip_params=False):
        d = case(name, "meta", expect, why)
        if not skip_params:
            with open(os.path.join(d, "params.json"), "w") as f:
                f.write(raw_params if raw_params is not None else json.dumps(
                    params if params is not None else meta_params_json(cfg, -1)))
        for r, s in enumerate(shards if shards is not None else [ckpt]):
            if s is not None:
                torch.save(s, os.path.join(d, f"consolidated.{r:02d}.pth"))
        return d

    def modified(base, **changes):
        out = OrderedDict()
        for k, v in base.items():
            if k in changes:
                if changes[k] is not None:
                    out[k] = changes[k]
            else:
                out[k] = v
        for k, v in changes.items():
            if k not in base and v is not None:
                out[k] = v
        return out

    pj = meta_params_json(cfg, -1)

    # ---- meta ----
    meta_case("meta-missing-params", "params.json", "directory has consolidated.00.pth but no params.json",
              skip_params=True)
    meta_case("meta-params-invalid-json", "params.json", "params.json is truncated mid-object (not valid JSON)",
              raw_params=json.dumps(pj)[:-12])
    meta_case("meta-params-missing-dim", "dim", 'params.json lacks the required "dim" field',
              params=OrderedDict((k, v) for k, v in pj.items() if k != "dim"))
    meta_case("meta-heads-not-dividing-dim", "n_heads", "n_heads=3 does not divide dim=16",
              params=OrderedDict(pj, n_heads=3))
    meta_case("meta-no-checkpoint", "consolidated", "params.json present but no consolidated.*.pth file",
              shards=[])
    mha_shards = split_meta(mha_ckpt, 4)
    meta_case("meta-missing-middle-shard", "consolidated.01.pth",
              "4-way split (n_heads=4, no n_kv_heads) with consolidated.00/02/03.pth present but 01 missing",
              shards=[mha_shards[0], None, mha_shards[2], mha_shards[3]], params=meta_params_json(MICRO_MHA, -1))
    meta_case("meta-three-shards", "shard",
              "3 shard files (each holding size//3 rows/cols) but 3 divides neither n_heads=4 nor n_kv_heads=2",
              shards=split_meta(ckpt, 3, floor=True))
    meta_case("meta-wq-wrong-shape", "layers.0.attention.wq.weight", "wq is [12, 16] instead of [16, 16]",
              shards=[modified(ckpt, **{"layers.0.attention.wq.weight": ckpt["layers.0.attention.wq.weight"][:12].clone()})])
    meta_case("meta-unknown-tensor", "layers.0.attention.wq.bias",
              "extra tensor layers.0.attention.wq.bias that Llama 2 does not have",
              shards=[modified(ckpt, **{"layers.0.attention.wq.bias": torch.zeros(16, dtype=torch.bfloat16)})])
    meta_case("meta-missing-tensor", "layers.1.feed_forward.w2.weight",
              "layers.1.feed_forward.w2.weight absent from the checkpoint",
              shards=[modified(ckpt, **{"layers.1.feed_forward.w2.weight": None})])
    d = meta_case("meta-truncated-pth", "consolidated.00.pth", "consolidated.00.pth cut to half its length")
    p = os.path.join(d, "consolidated.00.pth")
    with open(p, "rb") as f:
        data = f.read()
    with open(p, "wb") as f:
        f.write(data[: len(data) // 2])
    d = meta_case("meta-not-zip", "consolidated.00.pth", "consolidated.00.pth is a text file, not a zip archive",
                  shards=[])
    with open(os.path.join(d, "consolidated.00.pth"), "w") as f:
        f.write("This is not a PyTorch checkpoint.\n")
    d = meta_case("meta-empty-pth", "consolidated.00.pth", "consolidated.00.pth is 0 bytes", shards=[])
    open(os.path.join(d, "consolidated.00.pth"), "wb").close()
    d = meta_case("meta-malicious-pickle", "consolidated.00.pth",
                  "data.pkl REDUCEs posix.system('echo pwned') in place of tok_embeddings.weight; "
                  "must be rejected without executing it",
                  shards=[modified(ckpt, **{"tok_embeddings.weight": _Pwn()})])
    check_malicious(os.path.join(d, "consolidated.00.pth"))
    meta_case("meta-unsupported-dtype", "layers.0.attention.wq.weight", "wq stored as int32",
              shards=[modified(ckpt, **{"layers.0.attention.wq.weight":
                                        (ckpt["layers.0.attention.wq.weight"].float() * 100).to(torch.int32)})])
    s2 = split_meta(ckpt, 2)
    s2[1]["layers.0.attention_norm.weight"] = s2[1]["layers.0.attention_norm.weight"][:8].clone()
    meta_case("meta-shards-disagree-norm", "layers.0.attention_norm.weight",
              "replicated layers.0.attention_norm.weight is [16] in shard 00 but [8] in shard 01",
              shards=s2, params=meta_params_json(cfg, cfg["vocab_size"]))

    # ---- hf ----
    hf_base = os.path.join(MICRO_DIR, "hf")
    hf_sharded_base = os.path.join(MICRO_DIR, "hf-sharded")
    base_tensors = load_file(os.path.join(hf_base, "model.safetensors"))

    def hf_case(name, expect, why, base=hf_base, tensors=None):
        d = case(name, "hf", expect, why)
        for fn in sorted(os.listdir(base)):
            shutil.copyfile(os.path.join(base, fn), os.path.join(d, fn))
        if tensors is not None:
            save_file(tensors, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        return d

    d = hf_case("hf-missing-config", "config.json", "model.safetensors present but no config.json")
    os.remove(os.path.join(d, "config.json"))
    d = hf_case("hf-config-invalid-json", "config.json", "config.json is truncated mid-object (not valid JSON)")
    p = os.path.join(d, "config.json")
    with open(p) as f:
        text = f.read()
    with open(p, "w") as f:
        f.write(text[: len(text) // 2])
    d = hf_case("hf-truncated-safetensors", "model.safetensors", "model.safetensors cut to half its length")
    p = os.path.join(d, "model.safetensors")
    with open(p, "rb") as f:
        data = f.read()
    with open(p, "wb") as f:
        f.write(data[: len(data) // 2])
    missing_shard = hf_shards[-1]
    d = hf_case("hf-index-missing-shard", missing_shard,
                f"model.safetensors.index.json maps tensors to {missing_shard}, which is absent",
                base=hf_sharded_base)
    os.remove(os.path.join(d, missing_shard))
    q = "model.layers.0.self_attn.q_proj.weight"
    hf_case("hf-q-proj-wrong-shape", q, "q_proj is [16, 12] instead of [16, 16]",
            tensors=modified(base_tensors, **{q: base_tensors[q][:, :12].contiguous()}))
    hf_case("hf-missing-lm-head", "lm_head.weight",
            "lm_head.weight absent while tie_word_embeddings is false",
            tensors=modified(base_tensors, **{"lm_head.weight": None}))
    g = "model.layers.0.mlp.gate_proj.weight"
    hf_case("hf-unsupported-dtype", g, "gate_proj stored as int8 (safetensors dtype I8)",
            tensors=modified(base_tensors, **{g: (base_tensors[g] * 100).to(torch.int8)}))

    write_json_pretty(os.path.join(BAD_DIR, "cases.json"), cases)
    verify_bad(cases)
    log(f"{len(cases)} bad cases written")


def check_malicious(path):
    """Inspect (never load) the malicious checkpoint: data.pkl must reference posix/os.system."""
    with zipfile.ZipFile(path) as z:
        pkl_name = [n for n in z.namelist() if n.endswith("/data.pkl")][0]
        pkl = z.read(pkl_name)
    globals_seen = [arg for op, arg, _ in pickletools.genops(pkl) if op.name in ("GLOBAL", "STACK_GLOBAL")]
    assert any(g in ("posix system", "nt system", "os system") for g in globals_seen), globals_seen
    assert any(op.name == "REDUCE" for op, _, _ in pickletools.genops(pkl))
    log(f"malicious pickle globals: {globals_seen}")


def verify_bad(cases):
    """Cheap sanity checks that each bad case really is bad in the advertised way."""
    from safetensors import SafetensorError

    names = [c["case"] for c in cases]
    assert len(names) == len(set(names)) and len(names) >= 18
    for c in cases:
        d = os.path.join(BAD_DIR, c["case"])
        assert os.path.isdir(d)
        if c["case"] == "meta-malicious-pickle":
            continue  # never loaded
        if c["case"] in ("meta-truncated-pth", "meta-not-zip", "meta-empty-pth"):
            try:
                torch.load(os.path.join(d, "consolidated.00.pth"), weights_only=True)
            except Exception:
                pass
            else:
                raise AssertionError(c["case"])
        if c["case"] == "hf-truncated-safetensors":
            try:
                load_file(os.path.join(d, "model.safetensors"))
            except (SafetensorError, Exception):
                pass
            else:
                raise AssertionError(c["case"])
        for fn in ("params.json", "config.json"):
            p = os.path.join(d, fn)
            if os.path.exists(p):
                try:
                    with open(p) as f:
                        json.load(f)
                    ok = True
                except json.JSONDecodeError:
                    ok = False
                assert ok == ("invalid-json" not in c["case"]), c["case"]


# --------------------------------------------------------------------------------------

def main():
    torch.set_num_threads(1)  # bit-stable logits independent of core count
    torch.use_deterministic_algorithms(True)
    for d in (TINY_DIR, TINY_CHAT_DIR, MICRO_DIR, BAD_DIR):
        if os.path.isdir(d):
            shutil.rmtree(d)
    os.makedirs(TINY_DIR)
    os.makedirs(MICRO_DIR)
    os.makedirs(BAD_DIR)
    gen_tiny()
    gen_tiny_chat()
    gen_bad()
    total = 0
    for d in (TINY_DIR, MICRO_DIR, BAD_DIR):
        for dp, _, fns in os.walk(d):
            for fn in fns:
                total += os.path.getsize(os.path.join(dp, fn))
    log(f"total size of tests/data/{{tiny,micro,bad}}: {total / 1024:.1f} KiB")
    assert total < 3 * 1024 * 1024
    # The hostile and valid-but-unusual cases (tests/data/bad/hostile-*, tests/data/unusual/)
    # are derived from micro/ by their own script.
    import gen_hostile_cases
    gen_hostile_cases.main()


if __name__ == "__main__":
    main()
