#!/usr/bin/env python3
"""Generate the tokenizer test data under tests/data/.

Outputs (all deterministic for a given sentencepiece version):

* tests/data/tokenizer/small_corpus.txt   generated multilingual training text
* tests/data/tokenizer/small.model        SentencePiece BPE model trained on it
                                          with Llama 2's trainer settings
* tests/data/tokenizer/variant.model      the same without byte fallback and
                                          without the dummy prefix
* tests/data/llama2-tokenizer/            copy of the real Llama 2 tokenizer.model
                                          and its README.md (license, sha256)
* tests/data/tokenizer/small_cases.json   expected encode/decode results for small.model
* tests/data/tokenizer/variant_cases.json expected encode/decode results for variant.model
* tests/data/tokenizer/llama2_cases.json  expected encode/decode results for Llama 2

Each case file has the form

    {
      "model": "<path relative to tests/data>",
      "sentencepiece_version": "...",
      "vocab_size": N, "unk_id": 0, "bos_id": 1, "eos_id": 2, "pad_id": -1,
      "encode": [{"text": str, "ids": [int], "pieces": [str], "decoded": str}, ...],
      "decode": [{"ids": [int], "text": str}, ...]
    }

where `ids` is `sp.encode(text)` (no BOS/EOS), `decoded` is `sp.decode(ids)`
and each decode case holds `sp.decode(ids)` for an arbitrary id sequence.

Usage: python scripts/gen_tokenizer_cases.py [--llama2-src PATH]
(run from anywhere; paths are resolved relative to the repository root).
"""

import argparse
import hashlib
import json
import random
import shutil
from pathlib import Path

import sentencepiece as spm

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
TOK_DIR = DATA / "tokenizer"
LLAMA_DIR = DATA / "llama2-tokenizer"
DEFAULT_LLAMA_SRC = ROOT.parent / "shared" / "llama2-tokenizer"
LLAMA_SHA256 = "9e556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347"

# ---------------------------------------------------------------------------
# Training corpus
# ---------------------------------------------------------------------------

SENTENCES = [
    # English
    "The quick brown fox jumps over the lazy dog.",
    "Language models predict the next token given the previous tokens.",
    "She sells sea shells by the sea shore, and the shells she sells are surely seashells.",
    "In 1969, Apollo 11 landed on the Moon after a journey of 384,400 kilometres.",
    "Please call me at 555-0134 before 10:30 a.m. on Tuesday, March 14th.",
    "The total cost was $1,234.56, including 7.5% tax.",
    "Transformers use attention: softmax(QK^T / sqrt(d)) V.",
    "Tokenization splits text into pieces; each piece maps to an integer id.",
    "It's a truth universally acknowledged that a single man in possession of a good fortune must be in want of a wife.",
    "Rust guarantees memory safety without a garbage collector.",
    # German
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Übung macht den Meister, und Straßenbahnen fahren pünktlich.",
    # French
    "Le cœur a ses raisons que la raison ne connaît point.",
    "À bientôt ! Ça va très bien, merci.",
    # Spanish
    "¿Dónde está la biblioteca? ¡Está allí, junto a la estación!",
    "El niño comió una manzana y bebió agua.",
    # Russian
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Москва — столица России.",
    # Greek
    "Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο.",
    # Chinese
    "我爱自然语言处理。今天天气很好，我们去公园散步吧。",
    "机器学习是人工智能的一个分支。",
    # Japanese
    "日本語の文章をトークン化します。東京は日本の首都です。",
    "ひらがなとカタカナと漢字を混ぜて書きます。",
    # Korean
    "안녕하세요. 만나서 반갑습니다. 한국어 형태소 분석기입니다.",
    # Arabic
    "مرحبا بالعالم. اللغة العربية جميلة جدا.",
    # Hindi
    "नमस्ते दुनिया। मुझे हिंदी पढ़ना पसंद है।",
    # Hebrew
    "שלום עולם, מה שלומך היום?",
    # Vietnamese / Turkish / Polish
    "Tiếng Việt có nhiều dấu thanh điệu.",
    "Türkçe çok güzel bir dildir; ağaç, öğrenci, ılık.",
    "Zażółć gęślą jaźń.",
    # Emoji
    "I love pizza 🍕 and tacos 🌮! 😀😃😄",
    # Code
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)",
    "fn main() {\n    let xs: Vec<u32> = (0..10).collect();\n    println!(\"{:?}\", xs);\n}",
    "for (int i = 0; i < 100; ++i) { sum += a[i] * b[i]; }",
    '{"name": "llama", "layers": 32, "dim": 4096, "eps": 1e-05}',
    "SELECT id, name FROM users WHERE age >= 21 ORDER BY name;",
    "<div class=\"container\"><p>Hello, <b>world</b>!</p></div>",
    "import numpy as np\nx = np.arange(12).reshape(3, 4)\nprint(x.sum(axis=0))",
    "git commit -m \"fix: handle empty input\" && git push origin main",
    # URLs and numbers
    "Visit https://example.com/path?query=42&lang=en#section for details.",
    "Pi is approximately 3.14159265358979 and e is about 2.71828.",
    "Version 2.0.1 was released on 2023-07-18 at 09:00 UTC.",
]

WORDS = (
    "the of and to in is was for on that with as by at from this are be have "
    "model token text data train test value number system user assistant "
    "hello world language learning deep network layer weight output input "
    "Haus Wasser Straße école été niño año город мир 世界 数据 日本 東京 한국 "
    "سلام कंप्यूटर 🙂 🚀 ✓ → ∑ π λ"
).split()


def build_corpus() -> str:
    rng = random.Random(20240601)
    lines = []
    for _ in range(40):
        lines.extend(SENTENCES)
    for _ in range(1500):
        n = rng.randint(3, 14)
        words = [rng.choice(WORDS) for _ in range(n)]
        if rng.random() < 0.4:
            words.insert(rng.randrange(len(words) + 1), str(rng.randint(0, 10**rng.randint(1, 7))))
        sep = rng.choice([" ", " ", " ", "  ", "    ", "\t"])
        line = sep.join(words)
        if rng.random() < 0.3:
            line = " " * rng.randint(1, 8) + line
        lines.append(line)
    rng.shuffle(lines)
    return "\n".join(lines) + "\n"


def train_model(name: str, vocab_size: int, byte_fallback: bool, add_dummy_prefix: bool) -> Path:
    TOK_DIR.mkdir(parents=True, exist_ok=True)
    corpus_path = TOK_DIR / "small_corpus.txt"
    corpus_path.write_text(build_corpus(), encoding="utf-8")
    prefix = TOK_DIR / name
    spm.SentencePieceTrainer.train(
        input=str(corpus_path),
        model_prefix=str(prefix),
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=byte_fallback,
        split_digits=True,
        normalization_rule_name="identity",
        add_dummy_prefix=add_dummy_prefix,
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        character_coverage=0.99995,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    prefix.with_suffix(".vocab").unlink()
    return prefix.with_suffix(".model")


def copy_llama2(src_dir: Path) -> Path:
    LLAMA_DIR.mkdir(parents=True, exist_ok=True)
    dst = LLAMA_DIR / "tokenizer.model"
    src = src_dir / "tokenizer.model"
    if src.resolve() != dst.resolve():
        shutil.copyfile(src, dst)
        shutil.copyfile(src_dir / "README.md", LLAMA_DIR / "README.md")
    digest = hashlib.sha256(dst.read_bytes()).hexdigest()
    if digest != LLAMA_SHA256:
        raise SystemExit(f"unexpected sha256 {digest} for {dst}")
    return dst


# ---------------------------------------------------------------------------
# Encode cases
# ---------------------------------------------------------------------------

EDGE_CASES = [
    "",
    " ",
    "  ",
    "   ",
    " " * 16,
    " " * 17,
    " " * 33,
    " " * 100,
    "Hello world!",
    " Hello world!",
    "  Hello world!",
    "Hello world! ",
    "Hello world!   ",
    "Hello  world",
    "Hello   world",
    "Hello    world",
    "Hello" + " " * 20 + "world",
    "a b  c   d    e     f      g       h        i",
    "\n",
    "\n\n",
    "\t",
    " \t \n ",
    "line one\nline two\n",
    "\nleading newline",
    "trailing newline\n",
    "tab\tseparated\tvalues",
    "mixed \t\n\r whitespace \r\n",
    "\r\n",
    "<s>",
    "</s>",
    "<unk>",
    "<s>Hello</s>",
    "<s> [INST] hi [/INST] hello </s>",
    "[INST]",
    "[/INST]",
    "<<SYS>>\nYou are helpful.\n<</SYS>>\n\n",
    "[INST] <<SYS>>\nsys\n<</SYS>>\n\nuser msg [/INST]",
    "<pad>",
    "<0x41>",
    "<0xFF><0x00>",
    "▁",
    "▁▁",
    "▁hello",
    "hello▁world",
    " ▁ ",
    "0",
    "1234567890",
    "3.14159",
    "-42",
    "1,000,000",
    "2023-07-18T09:00:00Z",
    "x = 10**9 + 7",
    "我爱你",
    "東京タワー",
    "한국어",
    "مرحبا",
    "שלום",
    "नमस्ते",
    "ไทย",
    "😀",
    "👨‍👩‍👧‍👦",
    "🏳️‍🌈",
    "👍🏽",
    "e\u0301",
    "a\u0308\u0301",
    "\u1100\u1161\u11a8",
    "Å Å Å",
    "ﬁ ﬂ",
    "\u00a0nbsp\u00a0",
    "\u200bzero\u200bwidth\u200b",
    "\u2028\u2029",
    "\ufeffbom",
    "\ufffd",
    "\U0010ffff",
    "\ue000private",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "\x00",
    "\x00\x01\x02",
    "a\x00b",
    "".join(chr(c) for c in range(0x20)),
    "\x7f",
    "\x1b[31mred\x1b[0m",
    "supercalifragilisticexpialidocious",
    "Pneumonoultramicroscopicsilicovolcanoconiosis",
    "a" * 300,
    "ab" * 200,
    "x" * 1000,
    "🙂" * 50,
    "中" * 100,
    "https://www.example.com/some/path/to/page.html?a=1&b=two#frag",
    "user@example.com",
    "C:\\Users\\llama\\file.txt",
    "<|endoftext|>",
    "''' triple quotes \"\"\"",
    "#!/usr/bin/env python3",
    "    indented code",
    "\tdef f(x):\n\t\treturn x",
    "fn main() {\n    println!(\"Hello, world!\");\n}\n",
    "if (a && b || !c) { return a->b[0]; }",
    "Ünïcödé têxt wïth dïäcrïtïcs",
    "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏ",
    "I'm can't won't shouldn't y'all",
    "Mr. Smith's car costs $20,000.",
    "...",
    "!!!???",
    "()[]{}<>",
    "~`!@#$%^&*-_=+|;:,./?",
    "∀x∈ℝ: x² ≥ 0",
    "½ ¾ ⅓ ①②③",
    "ＡＢＣ１２３",
]

FRAGMENTS = [
    "hello", "world", "Hello", "The", "model", "token", "tokens", "llama", "Llama",
    "42", "2023", "3.14", "1e-5", "0x1F", "100%", "$9.99",
    "über", "naïve", "café", "straße", "niño",
    "мир", "привет", "γειά", "世界", "你好", "こんにちは", "カタカナ", "안녕", "سلام", "नमस्ते",
    "😀", "🚀", "❤️", "👍🏽", "🇺🇸", "✓", "→", "∑", "π",
    "<s>", "</s>", "<unk>", "[INST]", "[/INST]", "<<SYS>>", "<</SYS>>", "▁",
    "fn", "let", "x", "=", "==", "->", "=>", "{", "}", "(", ")", ";", ":", ",", ".", "!", "?",
    "'", '"', "`", "#", "//", "/*", "*/", "\\n", "https://a.b/c", "foo_bar", "CamelCase",
    "\n", "\t", "\r", " ", "  ", "   ", "\x00", "\x07", "\x1f", "\u00a0", "\u200b",
    "e\u0301", "\u0300", "𝔘", "\U0001f9d1\u200d\U0001f4bb",
]

CHAT_SNIPPETS = [
    "[INST] <<SYS>>\nYou are a helpful, respectful and honest assistant.\n<</SYS>>\n\nWhat is the capital of France? [/INST]",
    "[INST] Write a haiku about Rust. [/INST] Memory safe and fast,\nborrow checker guards the gate,\nfearless threads run free. ",
    "User: hi\nAssistant: Hello! How can I help you today?\nUser: tell me a joke",
    "System: be brief\n\nUser:   lots   of   spaces   \n\nAssistant:\n\n- item 1\n- item 2\n",
    "```python\nprint('hi')\n```",
    "| a | b |\n|---|---|\n| 1 | 2 |",
    "Q: What is 12 * 34?\nA: 12 * 34 = 408.",
    "Dear Sir/Madam,\n\n    I am writing to you regarding order #12345.\n\nRegards,\nJ. Doe",
]


def generated_cases(rng: random.Random, count: int):
    out = []
    for _ in range(count):
        n = rng.randint(1, 12)
        parts = []
        for _ in range(n):
            parts.append(rng.choice(FRAGMENTS))
            parts.append(rng.choice(["", " ", " ", " ", "  ", "\n", "\t", "   "]))
        s = "".join(parts)
        if rng.random() < 0.2:
            s = " " * rng.randint(1, 5) + s
        out.append(s)
    # random unicode strings from several ranges (no surrogates)
    ranges = [
        (0x20, 0x7E), (0x00, 0x1F), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF),
        (0x590, 0x6FF), (0x900, 0x97F), (0xE00, 0xE7F), (0x3040, 0x30FF),
        (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0x1F300, 0x1F6FF), (0x10000, 0x1000F),
        (0xE000, 0xE0FF), (0xFFF0, 0xFFFD),
    ]
    for _ in range(count // 2):
        lo, hi = rng.choice(ranges)
        k = rng.randint(1, 20)
        chars = []
        for _ in range(k):
            if rng.random() < 0.2:
                chars.append(" ")
            else:
                chars.append(chr(rng.randint(lo, hi)))
        out.append("".join(chars))
    return out


def all_texts():
    rng = random.Random(1234)
    texts = list(EDGE_CASES) + list(CHAT_SNIPPETS) + list(SENTENCES)
    texts += generated_cases(rng, 160)
    # whitespace runs of every length next to words
    for n in range(1, 40):
        texts.append("x" + " " * n + "y")
    for n in (1, 2, 3, 5, 8, 15, 16, 17, 31, 32, 33):
        texts.append(" " * n + "word")
        texts.append("word" + " " * n)
    seen = set()
    unique = []
    for t in texts:
        if t not in seen:
            seen.add(t)
            unique.append(t)
    return unique


# ---------------------------------------------------------------------------
# Decode cases
# ---------------------------------------------------------------------------


def decode_id_sequences(sp: spm.SentencePieceProcessor, rng: random.Random):
    n = sp.get_piece_size()
    unk, bos, eos = sp.unk_id(), sp.bos_id(), sp.eos_id()

    has_bytes = sp.is_byte(sp.piece_to_id("<0x41>"))

    def byte_id(b: int) -> int:
        return sp.piece_to_id(f"<0x{b:02X}>")

    def piece_id(p: str) -> int:
        i = sp.piece_to_id(p)
        assert i != unk, p
        return i

    space = piece_id("▁")
    hello = sp.encode("hello")
    seqs = [
        [],
        [bos],
        [eos],
        [unk],
        [bos, eos],
        [bos] + hello + [eos],
        hello + [bos] + hello,
        hello + [eos] + hello + [unk] + hello,
        [unk] + hello,
        [unk, unk, unk],
        [space],
        [space, space],
        [bos, space, space],
        [bos, space] + hello,
        [space] + hello,
        [eos, space, space],
        [unk, space],
    ]
    if not has_bytes:
        seqs += [[unk, unk, space, unk], [bos, unk] + hello]
    else:
        seqs += _byte_sequences(byte_id, bos, eos, unk, space, hello)
    # every id once, in chunks
    ids = list(range(n))
    for start in range(0, n, 97):
        seqs.append(ids[start:start + 97])
    # random sequences
    special = [unk, bos, eos, space]
    bytes_ = [byte_id(b) for b in range(256)] if has_bytes else [unk]
    for _ in range(150):
        k = rng.randint(1, 25)
        seq = []
        for _ in range(k):
            r = rng.random()
            if r < 0.15:
                seq.append(rng.choice(special))
            elif r < 0.45:
                seq.append(rng.choice(bytes_))
            else:
                seq.append(rng.randrange(n))
        seqs.append(seq)
    if not has_bytes:
        return seqs
    # random byte-only sequences (valid and invalid UTF-8)
    for _ in range(60):
        if rng.random() < 0.5:
            text = "".join(chr(rng.choice([rng.randint(0x80, 0x7FF), rng.randint(0x800, 0xD7FF),
                                            rng.randint(0x10000, 0x10FFFF)])) for _ in range(rng.randint(1, 4)))
            raw = list(text.encode("utf-8"))
            if raw and rng.random() < 0.5:
                del raw[rng.randrange(len(raw))]
        else:
            raw = [rng.randrange(256) for _ in range(rng.randint(1, 8))]
        seqs.append([byte_id(b) for b in raw])
    return seqs


def _byte_sequences(byte_id, bos, eos, unk, space, hello):
    return [
        [byte_id(0x41)],
        [byte_id(0x41), space] + hello,
        [byte_id(0x20), space],
        [byte_id(0x20)] + hello,
        [byte_id(0xE2), byte_id(0x96), byte_id(0x81)] + hello,
        [byte_id(0xE4), byte_id(0xB8), byte_id(0xAD)],
        [byte_id(0xE4), byte_id(0xB8)],
        [byte_id(0xE4), byte_id(0xB8)] + hello,
        [byte_id(0xE4)] + hello + [byte_id(0xB8), byte_id(0xAD)],
        [byte_id(0xB8), byte_id(0xAD)],
        [byte_id(0xFF), byte_id(0xFE)],
        [byte_id(0xC0), byte_id(0x80)],
        [byte_id(0xED), byte_id(0xA0), byte_id(0x80)],
        [byte_id(0xF4), byte_id(0x90), byte_id(0x80), byte_id(0x80)],
        [byte_id(0xF0), byte_id(0x9F), byte_id(0x98), byte_id(0x80)],
        [byte_id(0xF0), byte_id(0x9F), byte_id(0x98)],
        [byte_id(0xF0), byte_id(0x9F), byte_id(0x98), byte_id(0x41)],
        [byte_id(0xEF), byte_id(0xBF), byte_id(0xBD)],
        [byte_id(0x00)],
        [bos, byte_id(0xE4), eos, byte_id(0xB8), byte_id(0xAD)],
        [byte_id(0xE4), unk, byte_id(0xB8), byte_id(0xAD)],
        [bos, byte_id(0x41), space],
        [space, byte_id(0x41)],
        [space, space, byte_id(0x41)],
    ]


def dumps_one_item_per_line(doc: dict) -> str:
    """JSON with one top-level key per line and one list item per line."""
    lines = ["{"]
    items = list(doc.items())
    for k, (key, value) in enumerate(items):
        comma = "," if k + 1 < len(items) else ""
        if isinstance(value, list) and value:
            lines.append(f" {json.dumps(key)}: [")
            for i, item in enumerate(value):
                sep = "," if i + 1 < len(value) else ""
                lines.append("  " + json.dumps(item, ensure_ascii=False) + sep)
            lines.append(" ]" + comma)
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def make_cases(model_path: Path, out_path: Path, seed: int):
    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    texts = all_texts()
    encode = []
    for t in texts:
        ids = sp.encode(t)
        encode.append({
            "text": t,
            "ids": ids,
            "pieces": [sp.id_to_piece(i) for i in ids],
            "decoded": sp.decode(ids),
        })
    rng = random.Random(seed)
    decode = [{"ids": seq, "text": sp.decode(seq)} for seq in decode_id_sequences(sp, rng)]
    doc = {
        "model": str(model_path.relative_to(DATA)),
        "sentencepiece_version": spm.__version__,
        "vocab_size": sp.get_piece_size(),
        "unk_id": sp.unk_id(),
        "bos_id": sp.bos_id(),
        "eos_id": sp.eos_id(),
        "pad_id": sp.pad_id(),
        "encode": encode,
        "decode": decode,
    }
    out_path.write_text(dumps_one_item_per_line(doc), encoding="utf-8")
    print(f"{out_path.relative_to(ROOT)}: {len(encode)} encode cases, {len(decode)} decode cases")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama2-src", type=Path, default=DEFAULT_LLAMA_SRC,
                    help="directory holding Meta's tokenizer.model and README.md")
    args = ap.parse_args()

    small = train_model("small", 1200, byte_fallback=True, add_dummy_prefix=True)
    variant = train_model("variant", 900, byte_fallback=False, add_dummy_prefix=False)
    llama = copy_llama2(args.llama2_src)

    make_cases(small, TOK_DIR / "small_cases.json", seed=1)
    make_cases(variant, TOK_DIR / "variant_cases.json", seed=3)
    make_cases(llama, TOK_DIR / "llama2_cases.json", seed=2)

    sp = spm.SentencePieceProcessor(model_file=str(llama))
    assert sp.encode("Hello world!") == [15043, 3186, 29991]


if __name__ == "__main__":
    main()
