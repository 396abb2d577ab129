#!/usr/bin/env python3
"""Generate tests/data/gatt/cases.json: Ghost Attention (paper §3.3) references.

Two parts:

* "mask_cases": multi-turn dialogs with an instruction and fixed answers (as
  a sampler would give them). For each, the sampling contexts (the instruction
  concatenated to every user message) and, for every turn prefix, the
  training dialog (the instruction's training text in the first user turn or
  the system message only), its token ids and its last-turn loss mask. Token
  ids come from the prompt building of Meta's `Llama.chat_completion`
  (transcribed in gen_chat_cases.py) run with the `sentencepiece` package:
  the completed dialog is the Meta prompt of the dialog extended by one user
  turn, minus that turn; the trained tokens are everything after Meta's
  prompt of the dialog without its last answer, which must be a prefix.

* "sampling": the answers of the GAtt loop with transformers' greedy decoding
  on the tiny-chat model (tests/data/tiny-chat, loaded as in
  gen_reference.py): turn k is generated from Meta's prompt of the augmented
  context (sampled answers so far, the instruction on every user turn), EOS
  ends an answer, at most MAX_NEW_TOKENS tokens, and the answer is
  `sp.decode` of the new tokens, as in Meta's `chat_completion`.

Usage: python scripts/gen_gatt_cases.py
"""

import copy
import json
import os
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True
sys.path.insert(0, str(HERE))
import gen_chat_cases as chat  # noqa: E402
import gen_reference as ref  # noqa: E402

ROOT = HERE.parent
DATA = ROOT / "tests" / "data"
OUT = DATA / "gatt" / "cases.json"
MAX_NEW_TOKENS = 10


def user(c):
    return {"role": "user", "content": c}


def asst(c):
    return {"role": "assistant", "content": c}


def system(c):
    return {"role": "system", "content": c}


def join(instruction, message, position, separator):
    if position == "before":
        return instruction + separator + message
    return message + separator + instruction


def augment(dialog, instruction, position, separator):
    return [user(join(instruction, m["content"], position, separator)) if m["role"] == "user" else m
            for m in dialog]


def sampling_context(sys_msg, users, answers, instruction, position, separator):
    plain = [system(sys_msg)] if sys_msg is not None else []
    for u, a in zip(users, answers):
        plain += [user(u), asst(a)]
    plain.append(user(users[len(answers)]))
    return augment(plain, instruction, position, separator)


def training_dialog(sys_msg, users, answers, training_text, placement, position, separator):
    out = []
    if placement == "system":
        out.append(system(training_text if sys_msg is None else sys_msg + separator + training_text))
    elif sys_msg is not None:
        out.append(system(sys_msg))
    for k, (u, a) in enumerate(zip(users, answers)):
        if k == 0 and placement == "first_user":
            u = join(training_text, u, position, separator)
        out += [user(u), asst(a)]
    return out


def completed_tokens(tok, dialog):
    """Meta's chat_completion prompt of `dialog + [user("x")]` minus the tail."""
    tokens, _ = chat.meta_chat_tokens(tok, [dialog + [user("x")]])
    tail = tok.encode(f"{chat.B_INST} x {chat.E_INST}", bos=True, eos=False)
    assert tokens[0][-len(tail):] == tail
    return tokens[0][: -len(tail)]


def last_turn_mask(tok, dialog):
    tokens = completed_tokens(tok, dialog)
    prompt, _ = chat.meta_chat_tokens(tok, [dialog[:-1]])
    prompt = prompt[0]
    assert tokens[: len(prompt)] == prompt, "the prompt is a prefix of the completed dialog"
    answer = tokens[len(prompt):]
    assert answer[-1] == tok.eos_id
    assert tok.decode(answer[:-1]) == dialog[-1]["content"].strip() + " "
    trained = [False] * len(prompt) + [True] * len(answer)
    return tokens, trained, answer


MASK_CASES = [
    {
        "name": "three_turns_first_user",
        "source": [user("Hi, who are you?"), asst("(dropped)"), user("Where were you born?"),
                   asst("(dropped)"), user("What are your plans for tomorrow?")],
        "instruction": {"text": "Always act as Napoleon from now.", "training_text": "Figure: Napoleon."},
        "join": {"position": "before", "separator": "\n"},
        "placement": "first_user",
        "answers": ["I am Napoléon Bonaparte, Emperor of the French.", "On Corsica, in Ajaccio, 1769.",
                    "  To review my troops at dawn.  \n"],
    },
    {
        "name": "system_placement_after_join",
        "source": [system("You are a helpful assistant."), user("Name a sport."),
                   asst("x"), user("And a country where it is popular?"),
                   asst("y"), user("Summarise both in one line.")],
        "instruction": {"text": "You enjoy tennis. Speak in French.",
                        "training_text": "You enjoy tennis. Speak in French."},
        "join": {"position": "after", "separator": " "},
        "placement": "system",
        "answers": ["Le tennis, bien sûr !", "La France, avec Roland-Garros 🎾.",
                    "Tennis : Roland-Garros, Paris — 日本でも人気。"],
    },
]


SAMPLING = {
    "source": [system("Answer briefly."), user("Once upon a time, what happened?"),
               asst("x"), user("Then what?"), asst("y"), user("How did it end? été 日本")],
    "instruction": {"text": "Speak in French.", "training_text": "Language: French."},
    "join": {"position": "before", "separator": "\n"},
}


def split_source(source):
    sys_msg = source[0]["content"] if source[0]["role"] == "system" else None
    users = [m["content"] for m in source if m["role"] == "user"]
    return sys_msg, users


def gen_mask_case(tok, case):
    sys_msg, users = split_source(case["source"])
    inst, j = case["instruction"], case["join"]
    contexts = [sampling_context(sys_msg, users, case["answers"][:k], inst["text"], j["position"], j["separator"])
                for k in range(len(users))]
    for ctx in contexts:
        for m in ctx:
            if m["role"] == "user":
                assert inst["text"] in m["content"]
    examples = []
    for k in range(1, len(users) + 1):
        dialog = training_dialog(sys_msg, users, case["answers"][:k], inst["training_text"], case["placement"],
                                 j["position"], j["separator"])
        tokens, trained, answer = last_turn_mask(tok, dialog)
        examples.append({"messages": dialog, "tokens": tokens, "trained": trained, "answer_tokens": answer})
    return dict(case, sampling_contexts=contexts, examples=examples)


def greedy_answer(model, tok, prompt):
    """Greedy decoding until EOS or MAX_NEW_TOKENS; the new tokens (EOS excluded),
    the smallest top-1/top-2 logit margin."""
    m = copy.deepcopy(model)
    ids = torch.tensor([prompt], dtype=torch.int64)
    with torch.no_grad():
        out = m.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                         max_new_tokens=MAX_NEW_TOKENS, eos_token_id=tok.eos_id, pad_token_id=0,
                         output_scores=True, return_dict_in_generate=True)
    new = out.sequences[0, len(prompt):].tolist()
    margins = [float((lambda t: t[0] - t[1])(s[0].topk(2).values)) for s in out.scores]
    if tok.eos_id in new:
        new = new[: new.index(tok.eos_id)]
    return new, min(margins)


def gen_sampling(tok):
    params, shards = ref.load_meta_dir(str(DATA / "tiny-chat"))
    sd = shards[0]
    sd = {k: v.to(torch.float32) for k, v in sd.items() if k != "rope.freqs"}
    model = ref.build_hf_model(sd, ref.TINY_CHAT)
    sys_msg, users = split_source(SAMPLING["source"])
    inst, j = SAMPLING["instruction"], SAMPLING["join"]
    answers, contexts, context_tokens, answer_tokens, margins = [], [], [], [], []
    for k in range(len(users)):
        ctx = sampling_context(sys_msg, users, answers, inst["text"], j["position"], j["separator"])
        prompt, unsafe = chat.meta_chat_tokens(tok, [ctx])
        assert unsafe == [False]
        new, margin = greedy_answer(model, tok, prompt[0])
        text = tok.decode(new)
        assert not any(tag in text for tag in chat.SPECIAL_TAGS)
        print(f"turn {k}: {len(prompt[0])} prompt tokens -> {new} {text!r} (min margin {margin:.4f})")
        assert margin > 1e-2, "greedy step too close to a tie"
        contexts.append(ctx)
        context_tokens.append(prompt[0])
        answer_tokens.append(new)
        answers.append(text)
        margins.append(margin)
    return dict(SAMPLING, model="tiny-chat", max_new_tokens=MAX_NEW_TOKENS, contexts=contexts,
                context_tokens=context_tokens, answer_tokens=answer_tokens, answers=answers,
                min_margin=round(min(margins), 4))


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    tok = chat.Tokenizer(str(DATA / "llama2-tokenizer" / "tokenizer.model"))
    doc = {
        "tokenizer": "llama2-tokenizer/tokenizer.model",
        "mask_cases": [gen_mask_case(tok, c) for c in MASK_CASES],
        "sampling": gen_sampling(tok),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(chat.dumps_one_item_per_line(doc), encoding="utf-8")
    print(f"{OUT.relative_to(ROOT)}: {len(doc['mask_cases'])} mask cases, "
          f"{len(doc['sampling']['answers'])} sampled turns")


if __name__ == "__main__":
    main()
