#!/usr/bin/env python3
"""Hostile, corrupted and valid-but-unusual checkpoints for the importer's tests.

Writes, from the positive controls of tests/data/micro/:

  tests/data/bad/hostile-*/        checkpoints the importer must refuse, each with the
                                   ImportError variant it must give, listed in
                                   tests/data/bad/hostile.json
  tests/data/unusual/<case>/       valid checkpoints written by torch in unusual ways
                                   (transposed views, shared storages with offsets,
                                   protocol 4, nn.Parameter values) that must load to the
                                   values torch.load gives; listed in
                                   tests/data/unusual/cases.json

Run after scripts/gen_reference.py (which calls it at the end) with the venv of
scripts/requirements.txt:

    .venv/bin/python scripts/gen_hostile_cases.py

Deterministic: no randomness, fixed zip timestamps, so a rerun gives identical files.
Before writing a refused case that is still a zip/pickle torch can read, the script checks
what torch.load does with it, so the corpus documents which defects torch itself misses.
"""

import collections
import io
import json
import os
import pickle
import shutil
import struct
import sys
import zipfile

import torch
from safetensors.torch import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")
MICRO = os.path.join(DATA, "micro")
BAD = os.path.join(DATA, "bad")
UNUSUAL = os.path.join(DATA, "unusual")
ZIP_TIME = (2023, 7, 18, 0, 0, 0)

STORAGE_TYPES = {
    torch.bfloat16: torch.BFloat16Storage,
    torch.float32: torch.FloatStorage,
    torch.float16: torch.HalfStorage,
    torch.float64: torch.DoubleStorage,
    torch.int32: torch.IntStorage,
}


def log(msg):
    print(msg, file=sys.stderr)


def micro_state(layout="meta-1", name="consolidated.00.pth"):
    return torch.load(os.path.join(MICRO, layout, name), weights_only=True)


# --------------------------------------------------------------------------------------
# A torch.save look-alike whose pickle and records can be altered one field at a time.


class FakeStorage:
    def __init__(self, key, dtype, numel):
        self.key, self.dtype, self.numel = key, dtype, numel


class FakeTensor:
    """Pickles as torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce__(self):
        return (
            torch._utils._rebuild_tensor_v2,
            (self.storage, self.offset, tuple(self.size), tuple(self.stride), False,
             collections.OrderedDict()),
        )


class StatePickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, FakeStorage):
            return ("storage", STORAGE_TYPES[obj.dtype], obj.key, "cpu", obj.numel)
        return None


def write_zip(path, root, records, deflate_pickle=False):
    """records: list of (name under root, bytes), written uncompressed like torch.save
    (data.pkl deflated when asked, to keep the big hostile pickles small in the repo)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in records:
            # A name starting with "/" is placed outside the root folder.
            full = name[1:] if name.startswith("/") else f"{root}/{name}"
            info = zipfile.ZipInfo(full, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_STORED
            if deflate_pickle and name == "data.pkl":
                info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)


def fake_pth(path, state, tensor_edits=None, pickle_bytes=None, record_edits=None,
             root=None, protocol=2, duplicate=None, byteorder=b"little"):
    """Writes `state` (name -> contiguous tensor) the way torch.save lays it out, one
    storage per tensor, after applying

      tensor_edits:  name -> dict(offset=, size=, stride=, numel=, key=) in the pickle
      record_edits:  key -> bytes (replace), None (drop) or ("rename", new name)
      pickle_bytes:  a whole replacement data.pkl
      duplicate:     a name pickled a second time as the dict's last key
    """
    tensor_edits = tensor_edits or {}
    record_edits = record_edits or {}
    root = root or os.path.splitext(os.path.basename(path))[0]
    items, records = [], []
    for i, (name, t) in enumerate(state.items()):
        t = t.contiguous()
        key = str(i)
        raw = t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        edit = tensor_edits.get(name, {})
        storage = FakeStorage(edit.get("key", key), t.dtype, edit.get("numel", t.numel()))
        items.append((name, FakeTensor(storage, edit.get("offset", 0),
                                       edit.get("size", list(t.shape)),
                                       edit.get("stride", list(t.stride())))))
        records.append((key, raw))
    if duplicate is not None:
        items.append(next(item for item in items if item[0] == duplicate))
    if pickle_bytes is None:
        buf = io.BytesIO()
        pickler = StatePickler(buf, protocol=protocol)
        # A dict cannot hold a key twice, so the duplicate's opcodes are built by hand.
        if duplicate is None:
            pickler.dump(collections.OrderedDict(items))
        else:
            buf.write(b"\x80\x02}(")
            for name, value in items:
                inner = io.BytesIO()
                p = StatePickler(inner, protocol=2)
                p.fast = True  # no memo, so each pair's opcodes stand alone
                p.dump((name, value))
                body = inner.getvalue()
                assert body.endswith(b"\x86."), body[-4:]
                buf.write(body[2:-2])  # strip PROTO, TUPLE2 and STOP: SETITEMS takes the pair
            buf.write(b"u.")
        pickle_bytes = buf.getvalue()
    out = [("data.pkl", pickle_bytes), ("byteorder", byteorder)]
    for key, raw in records:
        edit = record_edits.get(key, raw)
        if edit is None:
            continue
        if isinstance(edit, tuple) and edit[0] == "rename":
            out.append(("/" + edit[1], raw))
            continue
        out.append((f"data/{key}", edit))
    out.append(("version", b"3\n"))
    write_zip(path, root, out, deflate_pickle=len(pickle_bytes) > 65536)


def record_index(state, name):
    return str(list(state).index(name))


# --------------------------------------------------------------------------------------

def copy_micro(layout, case, base=BAD):
    dst = os.path.join(base, case)
    shutil.copytree(os.path.join(MICRO, layout), dst)
    return dst


def torch_view(path):
    """What torch.load (weights_only) makes of a file: 'error: ...' or 'loads'."""
    try:
        torch.load(path, weights_only=True)
        return "loads"
    except Exception as e:  # noqa: BLE001 - documenting torch's behaviour
        return f"error: {type(e).__name__}"


def flip_byte_in_record(path, record):
    """Flips one byte of a stored record without touching its CRC."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(record)
    with open(path, "r+b") as f:
        f.seek(info.header_offset)
        header = f.read(30)
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        f.seek(start + 1)
        b = f.read(1)
        f.seek(start + 1)
        f.write(bytes([b[0] ^ 0x40]))


def deep_pickle(depth):
    body = bytearray(b"\x80\x02}X\x04\x00\x00\x00deep")
    body += b"]" * depth + b"a" * (depth - 1)
    body += b"s."
    return bytes(body)


def memo_bomb(entries):
    """`entries` MEMOIZE opcodes on one value (protocol 4): a memo of that many slots."""
    return b"\x80\x04}N" + b"\x94" * entries + b"0."


def sparse_memo():
    """LONG_BINPUT and LONG_BINGET at index 2^32 - 1: a memo kept as an array would
    allocate 4 G slots. The result is an empty dict."""
    return b"\x80\x02}r\xff\xff\xff\xffj\xff\xff\xff\xff0."


def gen_bad():
    cases = []

    def case(name, layout, variant, why, torch_load=None):
        entry = {"case": name, "layout": layout, "variant": variant, "why": why}
        if torch_load is not None:
            entry["torch_load"] = torch_load
        cases.append(entry)
        log(f"  {name}: {variant}")

    state = micro_state()
    wq = "layers.0.attention.wq.weight"
    w1 = "layers.1.feed_forward.w1.weight"

    def meta_case(name, variant, why, check_torch=True, **kw):
        d = copy_micro("meta-1", name)
        pth = os.path.join(d, "consolidated.00.pth")
        fake_pth(pth, state, **kw)
        case(name, "meta", variant, why, torch_view(pth) if check_torch else None)
        return d, pth

    # The positive control of the look-alike writer loads in torch and (in the Rust tests,
    # through unusual/) in the importer.
    ctrl = os.path.join(UNUSUAL, "meta-lookalike")
    shutil.copytree(os.path.join(MICRO, "meta-1"), ctrl)
    fake_pth(os.path.join(ctrl, "consolidated.00.pth"), state)
    back = torch.load(os.path.join(ctrl, "consolidated.00.pth"), weights_only=True)
    assert all(torch.equal(back[k], state[k]) for k in state)

    d, pth = meta_case("hostile-meta-crc-mismatch", "Checksum",
                       "one byte of the wq storage record flipped, CRC-32 left as it was")
    flip_byte_in_record(pth, f"consolidated.00/data/{record_index(state, wq)}")
    cases[-1]["torch_load"] = torch_view(pth)

    meta_case("hostile-meta-data-in-other-folder", "MissingRecord",
              "the wq storage record is stored as `archive/data/N` instead of under "
              "the archive's own `consolidated.00/data/`",
              record_edits={record_index(state, wq): ("rename", "archive/data/" +
                                                      record_index(state, wq))})
    meta_case("hostile-meta-missing-record", "MissingRecord",
              "the data/N record of w1 is absent from the zip",
              record_edits={record_index(state, w1): None})
    n = state[wq].numel()
    meta_case("hostile-meta-short-storage", "Storage",
              "the wq record holds half its bytes; the pickle still declares the full storage",
              record_edits={record_index(state, wq): state[wq].contiguous().view(-1)[: n // 2]
                            .view(torch.uint8).numpy().tobytes()})
    meta_case("hostile-meta-storage-smaller-than-tensor", "Storage",
              "wq's storage (record and declared size) has half the elements its shape needs",
              record_edits={record_index(state, wq): state[wq].contiguous().view(-1)[: n // 2]
                            .view(torch.uint8).numpy().tobytes()},
              tensor_edits={wq: {"numel": n // 2}})
    meta_case("hostile-meta-offset-past-end", "Storage",
              "wq's storage offset is past the end of its storage",
              tensor_edits={wq: {"offset": n + 5}})
    meta_case("hostile-meta-negative-offset", "Storage",
              "wq's storage offset is -4", tensor_edits={wq: {"offset": -4}})
    meta_case("hostile-meta-stride-past-end", "Storage",
              "wq's stride (32, 1) reaches past its 256-element storage",
              tensor_edits={wq: {"stride": [32, 1]}})
    meta_case("hostile-meta-huge-shape", "Storage",
              "wq declares size (2^40, 2^40): the element count overflows",
              tensor_edits={wq: {"size": [2 ** 40, 2 ** 40], "stride": [2 ** 40, 1]}})
    meta_case("hostile-meta-duplicate-key", "DuplicateTensor",
              "the pickled dict holds wq twice", check_torch=False, duplicate=wq)
    meta_case("hostile-meta-deep-nesting", "Limit",
              "data.pkl nests 100 000 lists inside each other (Python's own unpickler "
              "recurses on them)", check_torch=False, pickle_bytes=deep_pickle(100_000))
    meta_case("hostile-meta-memo-bomb", "Limit",
              "data.pkl fills 2 000 000 memo slots (MEMOIZE)", check_torch=False,
              pickle_bytes=memo_bomb(2_000_000))
    meta_case("hostile-meta-sparse-memo", "MissingTensor",
              "data.pkl is an empty dict stored at LONG_BINPUT 2^32-1: read without a "
              "4 G-slot memo, then refused for lacking the weights", check_torch=False,
              pickle_bytes=sparse_memo())
    meta_case("hostile-meta-big-endian", "Unsupported",
              "the archive's byteorder record says `big`", byteorder=b"big")
    meta_case("hostile-meta-protocol-1", "Pytorch",
              "data.pkl declares pickle protocol 1, which torch.save never writes",
              check_torch=False, pickle_bytes=b"\x80\x01}.")

    # A compressed record: torch.save always stores records uncompressed.
    d = copy_micro("meta-1", "hostile-meta-compressed-record")
    pth = os.path.join(d, "consolidated.00.pth")
    with zipfile.ZipFile(os.path.join(MICRO, "meta-1", "consolidated.00.pth")) as src, \
            zipfile.ZipFile(pth, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            out = zipfile.ZipInfo(info.filename, date_time=ZIP_TIME)
            out.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(out, data)
    case("hostile-meta-compressed-record", "meta", "Pytorch",
         "every record deflate-compressed", torch_view(pth))

    # Non-finite weights.
    for name, value, tensor in [("hostile-meta-nan-weight", float("nan"), w1),
                                ("hostile-meta-inf-weight", float("inf"), "norm.weight")]:
        d = copy_micro("meta-1", name)
        bad = {k: v.clone() for k, v in state.items()}
        bad[tensor].view(-1)[3] = value
        torch.save(bad, os.path.join(d, "consolidated.00.pth"))
        case(name, "meta", "NonFinite", f"element 3 of {tensor} is {value}", "loads")

    # Two files claiming to be shard 0.
    d = copy_micro("meta-1", "hostile-meta-ambiguous-shards")
    shutil.copy(os.path.join(d, "consolidated.00.pth"), os.path.join(d, "consolidated.000.pth"))
    case("hostile-meta-ambiguous-shards", "meta", "Shards",
         "both consolidated.00.pth and consolidated.000.pth (both shard 0)")

    # A replicated tensor whose copies disagree between model-parallel shards.
    d = copy_micro("meta-2", "hostile-meta-replicated-differ")
    shard = os.path.join(d, "consolidated.01.pth")
    sd = torch.load(shard, weights_only=True)
    sd["layers.1.ffn_norm.weight"] = sd["layers.1.ffn_norm.weight"].clone()
    sd["layers.1.ffn_norm.weight"][0] += 1
    torch.save(sd, shard)
    case("hostile-meta-replicated-differ", "meta", "Shards",
         "layers.1.ffn_norm.weight (replicated) differs between consolidated.00 and .01",
         torch_view(shard))

    # Huge configurations.
    for name, field, value in [("hostile-meta-huge-n-layers", "n_layers", 10 ** 12),
                               ("hostile-meta-huge-dim", "dim", 2 ** 40)]:
        d = copy_micro("meta-1", name)
        p = json.load(open(os.path.join(d, "params.json")))
        p[field] = value
        json.dump(p, open(os.path.join(d, "params.json"), "w"))
        case(name, "meta", "Limit", f"params.json has {field} = {value}")

    # Hugging Face.
    def hf_case(name, variant, why, layout="hf-sharded"):
        d = copy_micro(layout, name)
        case(name, "hf", variant, why)
        return d

    d = hf_case("hostile-hf-tensor-in-two-shards", "DuplicateTensor",
                "model.norm.weight is in both shards (with different values)")
    index = json.load(open(os.path.join(d, "model.safetensors.index.json")))
    first, second = sorted(set(index["weight_map"].values()))
    norm_file = index["weight_map"]["model.norm.weight"]
    other = second if norm_file == first else first
    t = load_file(os.path.join(d, other))
    t["model.norm.weight"] = torch.zeros(16)
    save_file(t, os.path.join(d, other), metadata={"format": "pt"})

    d = hf_case("hostile-hf-index-disagrees", "Index",
                "the index assigns lm_head.weight to the shard that does not hold it")
    p = os.path.join(d, "model.safetensors.index.json")
    index = json.load(open(p))
    files = sorted(set(index["weight_map"].values()))
    held = index["weight_map"]["lm_head.weight"]
    index["weight_map"]["lm_head.weight"] = files[0] if held == files[1] else files[1]
    json.dump(index, open(p, "w"), indent=2)

    for name, entry in [("hostile-hf-index-absolute-path", "/etc/passwd"),
                        ("hostile-hf-index-parent-escape", "../../micro/hf/model.safetensors")]:
        d = hf_case(name, "PathEscape", f"the index's weight_map names `{entry}`")
        p = os.path.join(d, "model.safetensors.index.json")
        index = json.load(open(p))
        index["weight_map"]["model.norm.weight"] = entry
        json.dump(index, open(p, "w"), indent=2)

    for name, field, value in [("hostile-hf-huge-context", "max_position_embeddings", 10 ** 12),
                               ("hostile-hf-huge-layers", "num_hidden_layers", 10 ** 9),
                               ("hostile-hf-huge-vocab", "vocab_size", 2 ** 62)]:
        d = hf_case(name, "Limit", f"config.json has {field} = {value}", layout="hf")
        p = os.path.join(d, "config.json")
        c = json.load(open(p))
        c[field] = value
        json.dump(c, open(p, "w"), indent=2)

    d = hf_case("hostile-hf-nan-weight", "NonFinite",
                "element 0 of model.layers.0.mlp.up_proj.weight is NaN", layout="hf")
    t = load_file(os.path.join(d, "model.safetensors"))
    t["model.layers.0.mlp.up_proj.weight"].view(-1)[0] = float("nan")
    save_file(t, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})

    with open(os.path.join(BAD, "hostile.json"), "w") as f:
        json.dump(cases, f, indent=2, sort_keys=True)
        f.write("\n")
    return cases


def gen_unusual():
    """Valid files torch writes in unusual ways; each must load to micro/meta-1's values."""
    state = micro_state()
    cases = [{"case": "meta-lookalike",
              "why": "written by this script's torch.save look-alike (the corpus' control)"}]

    def write(name, why, sd, **save_kw):
        d = os.path.join(UNUSUAL, name)
        shutil.copytree(os.path.join(MICRO, "meta-1"), d)
        path = os.path.join(d, "consolidated.00.pth")
        torch.save(sd, path, **save_kw)
        # weights_only=False: torch's restricted unpickler has no FRAME (protocol 4+)
        # opcode; these files are this script's own.
        back = torch.load(path, weights_only=False)
        for k in state:
            assert torch.equal(back[k], state[k]), (name, k)
        cases.append({"case": name, "why": why})
        log(f"  unusual/{name}")

    # Transposed views: the storage holds w.T contiguously, the pickle strides (1, rows).
    transposed = {k: (v.t().contiguous().t() if v.dim() == 2 else v) for k, v in state.items()}
    assert not transposed["layers.0.attention.wq.weight"].is_contiguous()
    write("meta-transposed-views", "every matrix saved as a transposed view (stride (1, rows))",
          transposed)

    # One flat storage, every tensor a view at its own offset.
    total = sum(v.numel() for v in state.values())
    flat = torch.empty(total, dtype=torch.bfloat16)
    shared, at = {}, 0
    for k, v in state.items():
        flat[at:at + v.numel()] = v.reshape(-1)
        shared[k] = flat[at:at + v.numel()].view(v.shape)
        at += v.numel()
    write("meta-shared-storage", "all tensors are views of one storage at different offsets",
          shared)

    # A column slice: non-contiguous, offset into a wider storage.
    wide = {}
    for k, v in state.items():
        if v.dim() == 2:
            big = torch.zeros(v.shape[0], v.shape[1] + 3, dtype=v.dtype)
            big[:, 2:2 + v.shape[1]] = v
            wide[k] = big[:, 2:2 + v.shape[1]]
        else:
            wide[k] = v
    write("meta-column-slices", "every matrix a column slice of a wider storage "
          "(offset 2, row stride cols + 3)", wide)

    write("meta-protocol-4", "torch.save(..., pickle_protocol=4): FRAME, MEMOIZE, STACK_GLOBAL",
          state, pickle_protocol=4)
    write("meta-protocol-5", "torch.save(..., pickle_protocol=5)", state, pickle_protocol=5)
    write("meta-parameters", "values are nn.Parameter (torch._utils._rebuild_parameter)",
          collections.OrderedDict((k, torch.nn.Parameter(v, requires_grad=False))
                                  for k, v in state.items()))

    with open(os.path.join(UNUSUAL, "cases.json"), "w") as f:
        json.dump(cases, f, indent=2, sort_keys=True)
        f.write("\n")


def main():
    torch.set_num_threads(1)
    for d in os.listdir(BAD) if os.path.isdir(BAD) else []:
        if d.startswith("hostile-"):
            shutil.rmtree(os.path.join(BAD, d))
    if os.path.isdir(UNUSUAL):
        shutil.rmtree(UNUSUAL)
    os.makedirs(UNUSUAL)
    log("hostile cases:")
    gen_bad()
    log("unusual but valid:")
    gen_unusual()


if __name__ == "__main__":
    main()
