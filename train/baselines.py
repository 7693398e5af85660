"""Baselines a fine-tuned model must beat, trained on the same training split in seconds to minutes.

- `majority`: the training split's label frequencies as scores (the prior; single-label: the majority class).
- `tfidf_logreg`: word 1-2-grams + character 2-5-grams (TF-IDF, one FeatureUnion) and logistic
  regression: one-vs-rest for multi-label tasks, multinomial for single-label ones.
- `embedding_probe`: the same logistic regressions on the base model's frozen, mean-pooled
  embeddings (with the model's text prefix), the probe the pilot measured (notes/measurements.md).

Each returns a `Baseline` whose `scores(texts)` has the fine-tuned model's layout: [n, outputs],
probabilities per task slice, so every metric, threshold and report treats them alike.

    probe = embedding_probe(schema, train_records, "embedded:e5-small", "query: ")
    probs = probe.scores(["Kim and Putin signed a treaty."])
"""

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np

from train.labels import MULTI, LabelSchema

log = logging.getLogger(__name__)


@dataclass
class Baseline:
    name: str
    description: str
    schema: LabelSchema
    features: Callable  # texts -> feature matrix
    heads: dict  # task name -> fitted classifier

    def scores(self, texts: list[str]) -> np.ndarray:
        X = self.features(list(texts))
        probs = np.zeros((len(texts), self.schema.num_outputs))
        for task in self.schema.tasks:
            head = self.heads[task.name]
            p = head.predict_proba(X)
            if task.kind == MULTI:
                probs[:, task.slice] = p
            else:  # classes absent from the training split keep probability 0
                for column, cls in enumerate(head.classes_):
                    probs[:, task.start + int(cls)] = p[:, column]
        return probs


def _fit_heads(schema: LabelSchema, X, records, make_estimator) -> dict:
    """One classifier per task on the same features: one-vs-rest over the labels of a multi-label
    task (targets multi-hot), one multinomial model for a single-label task (targets indices)."""
    from sklearn.multiclass import OneVsRestClassifier

    targets = np.array([schema.encode(r) for r in records], dtype=int)
    heads = {}
    for task in schema.tasks:
        y = targets[:, task.slice]
        if task.kind == MULTI:
            heads[task.name] = OneVsRestClassifier(make_estimator()).fit(X, y)
        else:
            heads[task.name] = make_estimator().fit(X, y.argmax(axis=1))
    return heads


def _build(name, description, schema, records, features, make_estimator) -> Baseline:
    X = features([r["text"] for r in records])
    return Baseline(name, description, schema, features, _fit_heads(schema, X, records, make_estimator))


def _logreg(max_iter: int, scale: bool = False):
    """Class-weighted logistic regression (the fine-tune's loss is class-weighted too); lbfgs fits
    a multinomial model for several classes. Iterations are capped: a warning beats a long wait."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def make():
        model = LogisticRegression(max_iter=max_iter, class_weight="balanced")
        return make_pipeline(StandardScaler(), model) if scale else model
    return make


def majority(schema: LabelSchema, train_records) -> Baseline:
    from sklearn.dummy import DummyClassifier

    def constant(texts):
        return np.zeros((len(texts), 1))
    return _build("majority", "label frequencies of the training split (single-label tasks: its majority class)",
                  schema, train_records, constant, lambda: DummyClassifier(strategy="prior"))


def tfidf_logreg(schema: LabelSchema, train_records, max_iter: int = 300) -> Baseline:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    union = FeatureUnion([
        ("words", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), min_df=2, sublinear_tf=True)),
        ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True,
                                  max_features=200_000)),
    ])
    union.fit([r["text"] for r in train_records])
    return _build("tfidf_logreg", "TF-IDF word 1-2-grams + char 2-5-grams, logistic regression", schema,
                  train_records, union.transform, _logreg(max_iter))


class MeanPooledEncoder:
    """Frozen encoder: texts -> L2-normalised mean of the last hidden states over real tokens, in
    length-sorted batches (little padding) under `torch.inference_mode`."""

    def __init__(self, name_or_path: str, text_prefix: str = "", max_length: int = 128, batch_size: int = 32,
                 progress: bool = False):
        from transformers import AutoModel, AutoTokenizer

        from train.base_model import resolve_model_path
        from train.model_folder import quiet_transformers

        path = resolve_model_path(name_or_path)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        with quiet_transformers():  # the encoder alone: its checkpoint's unused head is expected, not news
            self.model = AutoModel.from_pretrained(path).eval()
        self.prefix, self.max_length, self.batch_size, self.progress = text_prefix, max_length, batch_size, progress
        self.cache = {}  # text -> vector: validation, test and training texts are each embedded once

    def __call__(self, texts: list[str]) -> np.ndarray:
        import torch
        from tqdm.auto import tqdm

        todo = sorted({t for t in texts if t not in self.cache}, key=len)
        batches = range(0, len(todo), self.batch_size)
        with torch.inference_mode():
            for b in tqdm(batches, desc="embedding (probe)", unit="batch", disable=not self.progress or not todo):
                chunk = todo[b:b + self.batch_size]
                batch = self.tokenizer([self.prefix + t for t in chunk], padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt")
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
                self.cache.update(zip(chunk, pooled.float().numpy()))
        return np.stack([self.cache[t] for t in texts])


def embedding_probe(schema: LabelSchema, train_records, name_or_path: str, text_prefix: str = "",
                    max_length: int = 128, max_iter: int = 300, batch_size: int = 32,
                    progress: bool = False) -> Baseline:
    encoder = MeanPooledEncoder(name_or_path, text_prefix, max_length, batch_size, progress)
    return _build("embedding_probe", f"logistic regression on frozen mean-pooled {name_or_path} embeddings",
                  schema, train_records, encoder, _logreg(max_iter, scale=True))


NAMES = ("majority", "tfidf_logreg", "embedding_probe")


def build_all(schema: LabelSchema, train_records, probe_base: dict | None, max_iter: int = 300,
              batch_size: int = 32, progress: bool = False, names=NAMES) -> list[Baseline]:
    """The baselines named in `names` (default: all three); `probe_base` ({name_or_path, text_prefix,
    max_length}) or None to skip the embedding probe."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # capped iterations are a choice, said above
        warnings.filterwarnings("ignore", message="Label not .* is present in all training examples")
        if "majority" in names:
            out.append(majority(schema, train_records))
        if "tfidf_logreg" in names:
            out.append(tfidf_logreg(schema, train_records, max_iter))
        log.info("baselines: %s fitted on %d paragraphs", ", ".join(b.name for b in out), len(train_records))
        if probe_base and "embedding_probe" in names:
            out.append(embedding_probe(schema, train_records, probe_base["name_or_path"],
                                       probe_base.get("text_prefix", ""), probe_base.get("max_length", 128),
                                       max_iter, batch_size, progress))
            log.info("baselines: embedding probe on %s fitted", probe_base["name_or_path"])
    return out
