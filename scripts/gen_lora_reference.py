#!/usr/bin/env python3
"""Reference adapters and logits for the LoRA tests (tests/lora.rs), made with PEFT.

Loads tests/data/tiny/hf in transformers' LlamaForCausalLM (float32, eager
attention), wraps it with peft.get_peft_model, overwrites every lora_A / lora_B
with seeded N(0, 0.1²) values (PEFT initialises lora_B to zero, which would make
the adapters invisible in the logits), and writes:

  tests/data/tiny/peft-lora/     r=4, lora_alpha=8 (scale 2), lora_dropout=0.1,
                                 all seven projections (q k v o gate down up)
  tests/data/tiny/peft-rslora/   r=2, lora_alpha=3, use_rslora (scale 3/sqrt(2)),
                                 q_proj and v_proj
      each as PEFT's save_pretrained writes it: adapter_config.json (with
      target_modules sorted: PEFT keeps them as a set) and
      adapter_model.safetensors (PEFT's model card README.md is not kept)

  tests/data/tiny/lora_reference.safetensors
      tokens               [2, 12] int64, BOS first
      logits.lora          [2, 12, 512] PeftModel logits in eval mode (no dropout)
      logits.lora_merged   the same after merge_and_unload()
      logits.rslora        [2, 12, 512] for the rsLoRA adapters

Before writing, each saved adapter directory is reloaded onto a fresh base with
PeftModel.from_pretrained and must reproduce its logits exactly.
Deterministic. Usage: /path/to/python scripts/gen_lora_reference.py
"""

import json
import os
import shutil
import tempfile
import warnings

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file
from transformers import LlamaForCausalLM

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
HF_REL = os.path.join("tests", "data", "tiny", "hf")
OUT = os.path.join(ROOT, "tests", "data", "tiny")

ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "down_proj", "up_proj"]


def base():
    # A relative path, so that adapter_config.json's base_model_name_or_path is portable.
    return LlamaForCausalLM.from_pretrained(
        HF_REL, dtype=torch.float32, attn_implementation="eager"
    ).eval()


def make(config, seed):
    model = get_peft_model(base(), config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model.eval()


@torch.no_grad()
def logits(model, tokens):
    return model(input_ids=tokens).logits.float().contiguous()


def save_adapter(model, name, tokens, expected):
    target = os.path.join(OUT, name)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        reloaded = PeftModel.from_pretrained(base(), tmp).eval()
        again = logits(reloaded, tokens)
        assert torch.equal(again, expected), f"{name}: reloaded adapters differ"
        shutil.rmtree(target, ignore_errors=True)
        os.makedirs(target)
        for f in ["adapter_config.json", "adapter_model.safetensors"]:
            shutil.copy(os.path.join(tmp, f), os.path.join(target, f))
    # PEFT keeps target_modules as a set; sort it so that reruns write the same file.
    path = os.path.join(target, "adapter_config.json")
    with open(path) as f:
        saved = json.load(f)
    saved["target_modules"] = sorted(saved["target_modules"])
    with open(path, "w") as f:
        json.dump(saved, f, indent=2, sort_keys=True)
        f.write("\n")
    print(name, {k: saved[k] for k in ["r", "lora_alpha", "use_rslora", "target_modules"]})


def main():
    os.chdir(ROOT)
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    torch.set_num_threads(1)
    vocab = 512
    g = torch.Generator().manual_seed(4321)
    tokens = torch.randint(3, vocab, (2, 12), generator=g)
    tokens[:, 0] = 1

    plain = logits(base(), tokens)

    lora = make(
        LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules=ALL, task_type="CAUSAL_LM"),
        seed=1,
    )
    lora_logits = logits(lora, tokens)
    save_adapter(lora, "peft-lora", tokens, lora_logits)
    merged_logits = logits(lora.merge_and_unload(), tokens)

    rslora = make(
        LoraConfig(
            r=2,
            lora_alpha=3,
            use_rslora=True,
            lora_dropout=0.0,
            target_modules=["q_proj", "v_proj"],
            task_type="CAUSAL_LM",
        ),
        seed=2,
    )
    rslora_logits = logits(rslora, tokens)
    save_adapter(rslora, "peft-rslora", tokens, rslora_logits)

    for name, value in [("lora", lora_logits), ("rslora", rslora_logits)]:
        print(f"{name}: max |logits - base logits| = {(value - plain).abs().max():.3f}")
    print(f"merged vs unmerged: {(merged_logits - lora_logits).abs().max():.2e}")

    save_file(
        {
            "tokens": tokens.contiguous(),
            "logits.lora": lora_logits,
            "logits.lora_merged": merged_logits,
            "logits.rslora": rslora_logits,
        },
        os.path.join(OUT, "lora_reference.safetensors"),
    )
    print("wrote", os.path.join(OUT, "lora_reference.safetensors"))


if __name__ == "__main__":
    main()
