#!/usr/bin/env python3
"""Reference values for the training tests (tests/train_reference.rs).

Loads tests/data/tiny/hf in transformers' LlamaForCausalLM (float32, eager
attention) and, on a fixed batch with a prompt mask, computes:

  loss            cross-entropy, ignore_index=-100, mean over the unmasked targets
  grad_norm       global 2-norm of all parameter gradients
  grad.<name>     the gradients of a few parameters (HF names, HF layout)
  clip_max_norm   a max_norm below grad_norm
  clipped.<name>  the same gradients after torch.nn.utils.clip_grad_norm_(clip_max_norm)
  adamw.<name>    the parameters after one torch.optim.AdamW step (lr 1e-3,
                  betas (0.9, 0.95), eps 1e-5, weight decay 0.1 on matrices and
                  0 on 1-D parameters) on the gradients clipped to global norm 1.0
  schedule_lr     PyTorch's SequentialLR(LinearLR(start_factor=1/W, total_iters=W-1),
                  CosineAnnealingLR(T_max=T-W, eta_min=0.1*peak), milestones=[W])
                  learning rates for steps 0..T+5 with peak 3e-4, W=10, T=50

and writes them with the batch (inputs, targets) to
tests/data/tiny/train_reference.safetensors. Deterministic.
Usage: /path/to/python scripts/gen_train_reference.py
"""

import os
import warnings

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import LlamaForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
HF = os.path.join(ROOT, "tests", "data", "tiny", "hf")
OUT = os.path.join(ROOT, "tests", "data", "tiny", "train_reference.safetensors")

NAMES = [
    "model.embed_tokens.weight",
    "lm_head.weight",
    "model.layers.0.self_attn.v_proj.weight",
    "model.layers.0.self_attn.o_proj.weight",
    "model.layers.1.mlp.down_proj.weight",
    "model.layers.1.mlp.gate_proj.weight",
    "model.layers.0.input_layernorm.weight",
    "model.layers.1.post_attention_layernorm.weight",
    "model.norm.weight",
]


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = LlamaForCausalLM.from_pretrained(HF, torch_dtype=torch.float32, attn_implementation="eager")
    model.train()
    vocab = model.config.vocab_size

    g = torch.Generator().manual_seed(1234)
    tokens = torch.randint(3, vocab, (2, 17), generator=g)
    tokens[:, 0] = 1  # BOS
    inputs = tokens[:, :-1].contiguous()
    targets = tokens[:, 1:].clone()
    # A prompt mask as in SFT: the first targets of each row are prompt tokens.
    targets[0, :6] = -100
    targets[1, :3] = -100
    targets[1, 9:11] = -100

    logits = model(input_ids=inputs).logits
    loss = F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1), ignore_index=-100)
    loss.backward()

    params = dict(model.named_parameters())
    grads = {n: p.grad.detach().clone() for n, p in params.items()}
    grad_norm = torch.norm(torch.stack([g.norm(2) for g in grads.values()]), 2)

    out = {
        "inputs": inputs.to(torch.int64),
        "targets": targets.to(torch.int64),
        "loss": loss.detach().reshape(1),
        "grad_norm": grad_norm.reshape(1),
    }
    for n in NAMES:
        out[f"grad.{n}"] = grads[n]

    # clip_grad_norm_ with a max_norm below the total norm.
    clip_max_norm = float(grad_norm) / 3.0
    clipped = [p.grad.detach().clone() for p in params.values()]
    tmp = [torch.nn.Parameter(torch.zeros_like(c)) for c in clipped]
    for t, c in zip(tmp, clipped):
        t.grad = c
    returned = torch.nn.utils.clip_grad_norm_(tmp, clip_max_norm)
    assert abs(float(returned) - float(grad_norm)) < 1e-5 * float(grad_norm)
    clipped_by_name = {n: t.grad for n, t in zip(params.keys(), tmp)}
    out["clip_max_norm"] = torch.tensor([clip_max_norm], dtype=torch.float32)
    for n in NAMES:
        out[f"clipped.{n}"] = clipped_by_name[n]

    # One AdamW step after clipping to 1.0, weight decay on matrices only.
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-3,
        betas=(0.9, 0.95),
        eps=1e-5,
    )
    opt.step()
    for n in NAMES:
        out[f"adamw.{n}"] = params[n].detach().clone()

    # Warmup + cosine schedule.
    peak, warmup, total = 3e-4, 10, 50
    p = torch.nn.Parameter(torch.zeros(1))
    sopt = torch.optim.SGD([p], lr=peak)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched = torch.optim.lr_scheduler.SequentialLR(
            sopt,
            [
                torch.optim.lr_scheduler.LinearLR(sopt, start_factor=1.0 / warmup, end_factor=1.0, total_iters=warmup - 1),
                torch.optim.lr_scheduler.CosineAnnealingLR(sopt, T_max=total - warmup, eta_min=0.1 * peak),
            ],
            milestones=[warmup],
        )
        lrs = []
        for _ in range(total + 1):
            lrs.append(sopt.param_groups[0]["lr"])
            sopt.step()
            sched.step()
    out["schedule_lr"] = torch.tensor(lrs, dtype=torch.float64)

    out = {k: v.contiguous() for k, v in out.items()}
    save_file(out, OUT, metadata={"generator": "scripts/gen_train_reference.py"})
    print(f"loss {float(loss):.6f} grad_norm {float(grad_norm):.6f} -> {OUT}")


if __name__ == "__main__":
    main()
