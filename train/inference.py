"""Inference with a saved model: paragraphs and articles, long text windowed, never truncated.

    from train.inference import Classifier
    clf = Classifier.from_pretrained("models/latest")
    clf.predict(["Kim and Putin signed a treaty in Pyongyang."])[0]["topics"]     # ['russia_ties', ...]
    clf.predict_article(open("seeds/001_6f496aa57e6e3364.txt").read())["stance"]

Speed on a CPU comes from sorting windows by length, padding each batch only to its longest
window, small batches, and ONNX Runtime: where the model folder has an `onnx/` export (the
training job writes one; `python -m train.export` for others), the fp32 file runs by default,
with the PyTorch model's logits to ~1e-5; `precision="int8"` runs the quantized file.
"""

import os
from pathlib import Path

import numpy as np
import torch

from train.articles import DEFAULT_STANCE_METHOD, aggregate, check_stance_method, split_paragraphs
from train.labels import MULTI, LabelSchema
from train.model_folder import (ModelFolderError, broken_json_file, check_model_folder, load_thresholds,
                                load_torch_model)
from train.onnx_runtime import onnx_file, onnx_forward
from train.options import OptionError, one_of, positive_int

# Windows per forward pass. Measured on 2 cores: 8 beat 32 and 64 (activations stay in cache).
BATCH_SIZE = 8
MAX_CONTEXT_TOKENS = 64  # a headline longer than this is cut: the paragraph is what is labelled
PRECISIONS, ENGINES = ("fp32", "int8", "bf16"), ("auto", "onnx", "torch")


def with_precision(model, precision: str):
    if precision == "fp32":
        return model
    if precision == "bf16":
        return model.to(torch.bfloat16)
    if precision == "int8":  # int8 weights, activations quantized on the fly (VNNI on x86)
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    raise OptionError("precision", precision, "expected fp32, int8 or bf16")


def torch_forward(model):
    """(input_ids, attention_mask) int64 arrays -> logits array, with a PyTorch model."""
    model.eval()

    def forward(ids, mask):
        with torch.inference_mode():
            out = model(input_ids=torch.from_numpy(ids).to(model.device),
                        attention_mask=torch.from_numpy(mask).to(model.device)).logits
        return out.float().cpu().numpy()
    return forward


def choose_engine(path: Path, engine: str, precision: str, device: str) -> tuple[str, Path]:
    """The engine to run and the ONNX file it would use. auto: ONNX Runtime where the folder has an
    export for this precision and we run on the CPU (measured 2x faster than PyTorch at the same
    logits), else PyTorch."""
    file = onnx_file(path, precision)
    if engine == "auto":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "torch", file
        return ("onnx" if device == "cpu" and precision in ("fp32", "int8") and file.is_file() else "torch"), file
    if engine == "onnx":
        if precision not in ("fp32", "int8"):
            raise OptionError("precision", precision, "the onnx engine has fp32 and int8")
        if not file.is_file():
            raise ModelFolderError(f"{file}: missing; write it with `python -m train.export model_dir={path}`")
        return "onnx", file
    return "torch", file


class Classifier:
    def __init__(self, forward, tokenizer, schema: LabelSchema, thresholds: dict, text_prefix: str = "",
                 window: int = 128, overlap: int | None = None, max_batch: int | None = None,
                 engine: str = "torch", precision: str = "fp32", context: str = "none"):
        """`forward`: (input_ids, attention_mask) int64 arrays -> logits (see torch_forward).
        `max_batch`: cap on windows per call (1 for dynamic int8, whose activation scale is per call).
        `engine`, `precision`: what `forward` runs, for reports. `context`: "headline" for a model
        trained on (headline, paragraph) text pairs (`model.context=headline`)."""
        self.forward, self.tokenizer, self.schema = forward, tokenizer, schema
        self.engine, self.precision = engine, precision
        self.thresholds, self.text_prefix = thresholds, text_prefix
        self.window, self.max_batch, self.context = window, max_batch, context
        self.overlap = window // 4 if overlap is None else overlap  # context shared by neighbouring windows

    @classmethod
    def from_pretrained(cls, path="models/latest", device: str | None = None, threads: int | None = None,
                        window: int | None = None, precision: str = "fp32", engine: str = "auto"):
        """Load a model folder with its label schema and tuned thresholds (0.5 where none are saved).
        `window`: tokens per window (default: the model's 512 positions, so that any paragraph up
        to 512 tokens is read whole, exactly as `pipeline(...)` reads it).
        `precision`: fp32 (exact), int8 (dynamic quantization, CPU) or bf16 (PyTorch only).
        `engine`: onnx (ONNX Runtime over the folder's `onnx/` export, CPU), torch, or auto: onnx
        where that export exists and the device is the CPU, else torch. Both fp32 engines give the
        same logits to ~1e-5."""
        from transformers import AutoTokenizer

        one_of("precision", precision, PRECISIONS)  # before anything is loaded
        one_of("engine", engine, ENGINES)
        positive_int("threads", threads, optional=True)
        positive_int("window", window, optional=True)
        path = Path(path)
        config = check_model_folder(path)
        schema = LabelSchema(config["task_schema"])
        thresholds = load_thresholds(path, schema)
        threads = threads or max(1, min(torch.get_num_threads(), os.cpu_count() or 1))
        torch.set_num_threads(threads)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        engine, exported_file = choose_engine(path, engine, precision, device)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
            if engine == "onnx":
                forward = onnx_forward(exported_file, threads)
            else:
                forward = torch_forward(with_precision(load_torch_model(path).to(device), precision))
        except ModelFolderError:
            raise
        except Exception as e:  # corrupt weights, unreadable tokenizer: say which file, or at least which folder
            raise ModelFolderError(broken_json_file(path) or f"{path}: could not be loaded ({type(e).__name__}: {e})") from e
        window = window or min(config.get("max_position_embeddings", 512), tokenizer.model_max_length, 512)
        per_call_int8 = engine == "onnx" and precision == "int8"
        return cls(forward, tokenizer, schema, thresholds, config.get("text_prefix", ""),
                   window, max_batch=1 if per_call_int8 else None, engine=engine, precision=precision,
                   context=config.get("text_context", "none"))

    # -- windows -----------------------------------------------------------------------------
    def windows(self, text: str, context: str | None = None) -> list[list[int]]:
        """Token-id windows covering all of `text`: each at most `self.window` tokens with the
        special tokens and the model's text prefix; consecutive windows overlap by `overlap`.
        `context` (a headline-context model only): every window is the pair (prefix + context,
        a piece of text), as in training; the context is cut to MAX_CONTEXT_TOKENS."""
        tok = self.tokenizer
        if context and self.context == "headline":
            return self._pair_windows(context, text)
        head, tail = self._special_tokens()
        # Tokenise prefix and text together, as in training ("query: " alone would end in a "▁").
        # verbose=False: no "sequence length is longer than ... indexing errors" warning, since
        # the windows below are what the model reads.
        ids = tok(self.text_prefix + text, add_special_tokens=False, verbose=False)["input_ids"]
        cut = len(tok(self.text_prefix.rstrip(), add_special_tokens=False)["input_ids"]) if self.text_prefix else 0
        prefix, body = ids[:cut], ids[cut:]
        room = self.window - len(head) - len(tail) - len(prefix)
        if room <= self.overlap:
            raise ValueError(f"window of {self.window} tokens is too small for overlap {self.overlap}")
        starts = range(0, max(len(body) - self.overlap, 1), room - self.overlap)
        return [head + prefix + body[s:s + room] + tail for s in starts]

    def _pair_windows(self, context: str, text: str) -> list[list[int]]:
        tok = self.tokenizer
        head, middle, tail = self._pair_tokens()
        first = tok(self.text_prefix + context, add_special_tokens=False, verbose=False)["input_ids"][:MAX_CONTEXT_TOKENS]
        body = tok(text, add_special_tokens=False, verbose=False)["input_ids"]
        room = self.window - len(head) - len(first) - len(middle) - len(tail)
        if room <= self.overlap:
            raise ValueError(f"window of {self.window} tokens is too small for a headline and overlap {self.overlap}")
        starts = range(0, max(len(body) - self.overlap, 1), room - self.overlap)
        return [head + first + middle + body[s:s + room] + tail for s in starts]

    def _pair_tokens(self):
        """The ids a tokenizer puts before, between and after the two texts of a pair."""
        if not hasattr(self, "_pair_specials"):
            a = self.tokenizer("a", add_special_tokens=False)["input_ids"]
            b = self.tokenizer("b", add_special_tokens=False)["input_ids"]
            full = self.tokenizer("a", "b")["input_ids"]
            at = next(i for i in range(len(full)) if full[i:i + len(a)] == a)
            bt = next(i for i in range(at + len(a), len(full)) if full[i:i + len(b)] == b)
            self._pair_specials = full[:at], full[at + len(a):bt], full[bt + len(b):]
        return self._pair_specials

    def _special_tokens(self):
        """The ids the tokenizer puts before and after a text (e.g. <s> ... </s>)."""
        if not hasattr(self, "_specials"):
            plain = self.tokenizer("a", add_special_tokens=False)["input_ids"]
            full = self.tokenizer("a")["input_ids"]
            at = next(i for i in range(len(full)) if full[i:i + len(plain)] == plain)
            self._specials = full[:at], full[at + len(plain):]
        return self._specials

    def scores(self, texts: list[str], batch_size: int = BATCH_SIZE, progress: bool = False, on_batch=None,
               contexts: list[str | None] | None = None):
        """Probabilities [n, outputs] (sigmoid / softmax per task) and the number of windows per text.
        Topics take the max over windows; single-label tasks a length-weighted mean.
        `progress`: a bar over the windows; `on_batch(windows)` is called after every forward pass
        with the number of windows it scored (the command line's progress bar)."""
        batch_size = min(positive_int("batch_size", batch_size), self.max_batch or batch_size)
        contexts = contexts or [None] * len(texts)
        per_text = [self.windows(t, c) for t, c in zip(texts, contexts, strict=True)]
        flat = [(i, ids) for i, ws in enumerate(per_text) for ids in ws]
        order = sorted(range(len(flat)), key=lambda k: len(flat[k][1]))
        # NaN until scored: a window the loop below missed can never pass for a real score
        logits = np.full((len(flat), self.schema.num_outputs), np.nan, dtype=np.float32)
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(flat), desc="predicting", unit="window")
        pad = self.tokenizer.pad_token_id
        for b in range(0, len(order), batch_size):
            idx = order[b:b + batch_size]
            longest = max(len(flat[k][1]) for k in idx)
            ids = np.full((len(idx), longest), pad, dtype=np.int64)
            mask = np.zeros_like(ids)
            for row, k in enumerate(idx):
                seq = flat[k][1]
                ids[row, :len(seq)] = seq
                mask[row, :len(seq)] = 1
            logits[idx] = self.forward(ids, mask)
            if bar is not None:
                bar.update(len(idx))
            if on_batch is not None:
                on_batch(len(idx))
        if bar is not None:
            bar.close()
        unscored = int((~np.isfinite(logits)).any(axis=1).sum())
        if unscored:  # never return a number the model did not compute
            raise RuntimeError(f"{unscored} of {len(flat)} windows have no finite score from the model "
                               f"({self.engine} {self.precision}); no predictions returned")
        window_probs = self.schema.probabilities(logits)
        probs = np.zeros((len(texts), self.schema.num_outputs))
        lengths = np.array([len(ids) for _, ids in flat], dtype=np.float64)
        owner = np.array([i for i, _ in flat])
        first = np.searchsorted(owner, np.arange(len(texts) + 1))  # windows are grouped by text, in order
        for i in range(len(texts)):
            rows = slice(first[i], first[i + 1])
            for t in self.schema.tasks:
                p = window_probs[rows][:, t.slice]
                if t.kind == MULTI:
                    probs[i, t.slice] = p.max(axis=0)
                else:
                    probs[i, t.slice] = np.average(p, axis=0, weights=lengths[rows])
        return probs, [len(ws) for ws in per_text]

    # -- predictions -------------------------------------------------------------------------
    def predict(self, texts, batch_size: int = BATCH_SIZE, progress: bool = False, on_batch=None,
                contexts: list[str | None] | None = None) -> list[dict]:
        """Per paragraph: for each task its labels (multi-label: those at or above the threshold)
        and `<task>_scores`; `windows` says how many windows covered the text. `contexts`: each
        paragraph's headline, read by a headline-context model (ignored by others)."""
        if isinstance(texts, str):
            raise TypeError("predict() takes a list of texts; use predict_article() for one article")
        probs, windows = self.scores(list(texts), batch_size, progress, on_batch, contexts)
        preds = self.decode(probs)
        for p, n in zip(preds, windows):
            p["windows"] = n
        return preds

    def decode(self, probs: np.ndarray) -> list[dict]:
        preds = []
        for row in probs:
            pred = {}
            for t in self.schema.tasks:
                p = row[t.slice]
                scores = {label: round(float(x), 6) for label, x in zip(t.labels, p)}
                if t.kind == MULTI:
                    cut = self.thresholds.get(t.name, {})
                    pred[t.name] = [l for l in t.labels if scores[l] >= cut.get(l, 0.5)]
                else:
                    pred[t.name] = t.labels[int(np.argmax(p))]
                pred[f"{t.name}_scores"] = scores
            preds.append(pred)
        return preds

    def predict_article(self, text: str, batch_size: int = BATCH_SIZE, on_batch=None,
                        stance_method: str = DEFAULT_STANCE_METHOD) -> dict:
        """Split an article at blank lines (headline first), label each paragraph, and aggregate:
        topics by the annotation guide's rule, stance by `stance_method` (train/articles.py: rule,
        score_weighted or headline_weighted)."""
        check_stance_method(stance_method)
        paragraphs = split_paragraphs(text)
        if not paragraphs:
            raise ValueError("the article has no text")
        # a headline-context model reads each body paragraph with the headline, the headline alone
        contexts = [None] + [paragraphs[0]] * (len(paragraphs) - 1)
        preds = self.predict(paragraphs, batch_size, on_batch=on_batch, contexts=contexts)
        for text_, p in zip(paragraphs, preds):
            p["text"] = text_
        article = {"paragraphs": preds, "headline": paragraphs[0]}
        if {"topics", "stance"} <= {t.name for t in self.schema.tasks}:  # the guide's rule is for these
            article.update(aggregate(preds, stance_method=stance_method))
        return article
