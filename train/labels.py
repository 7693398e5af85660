"""The label schema: which tasks a model predicts, and how they sit in one output vector.

A schema is a list of tasks; each task is multi-label (independent sigmoids, zero or more labels)
or single-label (one softmax, exactly one label). All tasks share one classification head: the
logits of task 1, then task 2, ... For the news corpus:

    topics (multi-label): summitry, sanctions, russia_ties, inter_korean   -> logits 0-3
    stance (single-label): positive, negative, neutral                     -> logits 4-6

The schema is declared in `configs/data/<name>.yaml` and saved in the model's `config.json`
(`task_schema`), so any loader can tell the slices apart.
"""

from dataclasses import dataclass

import numpy as np

MULTI, SINGLE = "multi_label", "single_label"


@dataclass(frozen=True)
class Task:
    name: str  # the record field that holds this task's gold labels
    kind: str  # MULTI or SINGLE
    labels: tuple[str, ...]
    start: int  # first logit of this task in the head's output

    @property
    def stop(self) -> int:
        return self.start + len(self.labels)

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)


class LabelSchema:
    def __init__(self, tasks):
        """`tasks`: iterable of mappings with `name`, `kind` (multi_label|single_label), `labels`."""
        self.tasks, start = [], 0
        for t in tasks:
            kind, labels = t["kind"], tuple(t["labels"])
            if kind not in (MULTI, SINGLE):
                raise ValueError(f"task {t['name']!r}: kind must be {MULTI!r} or {SINGLE!r}, got {kind!r}")
            if len(set(labels)) != len(labels) or not labels or (kind == SINGLE and len(labels) < 2):
                raise ValueError(f"task {t['name']!r}: labels must be distinct, and a single-label task needs two or more")
            self.tasks.append(Task(t["name"], kind, labels, start))
            start += len(labels)
        if not self.tasks or len({t.name for t in self.tasks}) != len(self.tasks):
            raise ValueError("a schema needs at least one task, and task names must be distinct")
        self.num_outputs = start

    def __eq__(self, other):
        return isinstance(other, LabelSchema) and self.to_list() == other.to_list()

    def __repr__(self):
        return f"LabelSchema({self.to_list()})"

    def to_list(self) -> list[dict]:
        return [{"name": t.name, "kind": t.kind, "labels": list(t.labels)} for t in self.tasks]

    @classmethod
    def from_model_config(cls, config) -> "LabelSchema":
        schema = getattr(config, "task_schema", None)
        if not schema:
            raise ValueError("the model's config.json has no `task_schema`: it was not trained by this toolkit")
        return cls(schema)

    def output_names(self) -> list[str]:
        """Names of the head's outputs, for `id2label`: plain label names when they are unique
        across tasks (so `pipeline(...)` shows `sanctions`, `negative`), else `task:label`."""
        plain = [label for t in self.tasks for label in t.labels]
        if len(set(plain)) == len(plain):
            return plain
        return [f"{t.name}:{label}" for t in self.tasks for label in t.labels]

    def encode(self, record: dict) -> list[float]:
        """Gold labels of a record as the head's target vector (multi-hot / one-hot per task)."""
        target = [0.0] * self.num_outputs
        for t in self.tasks:
            gold = record[t.name]
            for label in gold if t.kind == MULTI else [gold]:
                target[t.start + t.labels.index(label)] = 1.0
        return target

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Sigmoid on multi-label slices, softmax on single-label slices."""
        logits = np.asarray(logits, dtype=np.float64)
        probs = np.empty_like(logits)
        for t in self.tasks:
            z = logits[:, t.slice]
            if t.kind == MULTI:
                probs[:, t.slice] = 1.0 / (1.0 + np.exp(-z))
            else:
                e = np.exp(z - z.max(axis=1, keepdims=True))
                probs[:, t.slice] = e / e.sum(axis=1, keepdims=True)
        return probs


def check_schema_matches(model_dir, schema: LabelSchema, data_name: str) -> None:
    """Raise ValueError naming both schemas when a model folder was trained on other labels."""
    import json
    from pathlib import Path

    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    saved = LabelSchema(config.get("task_schema") or [])
    if saved != schema:
        raise ValueError(f"{model_dir}: the model's label schema {saved.to_list()} differs from the label "
                         f"schema of data config {data_name!r} {schema.to_list()}; use the data config "
                         f"the model was trained with (data=...)")
