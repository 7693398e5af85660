"""The model card: `README.md` in every model folder, in the Hugging Face format (YAML metadata,
then markdown): labels and their meaning, how to load the model, training data and recipe,
evaluation per language with calibration, intended use and limitations.

The training job writes the card, with its metrics section measured on the validation split; the
evaluation job (`python -m train.evaluate`) rewrites only that section, between the two markers
below, with the figures of the split it evaluated. Prose that belongs to the data (label meanings,
licence, intended use, limitations) comes from the data config's `card:` section.

    write(folder, cfg, schema, metrics)                 # the training job, before the folder is moved into place
    record_evaluation(result, report_dir, {name: folder})   # the evaluation job
"""

import json
import logging
import time
from collections import Counter
from pathlib import Path

import yaml

from train import metrics as M
from train.data import load_split, split_paths
from train.labels import MULTI, LabelSchema
from train.report import num, table, with_ci

log = logging.getLogger(__name__)
CARD_FILE = "README.md"
METRICS_START, METRICS_END = "<!-- metrics:start -->", "<!-- metrics:end -->"
EMBEDDED_BASES = {"embedded:e5-small": "intfloat/multilingual-e5-small"}  # what train/base_model.py converts


def write(folder: Path, cfg, schema: LabelSchema, metrics: dict) -> Path | None:
    """Write `folder/README.md` for a model the training job just saved there; returns its path
    (None, with a warning, if it could not be written: the model is kept either way)."""
    try:
        return _write(Path(folder), cfg, schema, metrics)
    except Exception as e:  # a card must not cost the model it describes
        log.warning("model card not written (%s: %s); `python -m train.evaluate` writes one later",
                    type(e).__name__, e)
        return None


def _write(folder: Path, cfg, schema: LabelSchema, metrics: dict) -> Path:
    from train.data import limit, load_extra_files

    paths = split_paths(cfg.data)
    train_records = load_split(paths["train"], schema) + load_extra_files(cfg.data, schema)
    val_records = limit(load_split(paths["validation"], schema), cfg.data.get("max_eval_samples"), cfg.seed)
    figures, thresholds = score(folder, schema, val_records)
    where = (f"the validation split (`{cfg.data.files.validation}`, {len(val_records)} paragraphs), by the training "
             f"job on {time.strftime('%Y-%m-%d')}")
    section = metrics_section(schema, figures, where, thresholds)
    path = folder / CARD_FILE
    path.write_text(card(cfg, schema, metrics, train_records, section), encoding="utf-8")
    return path


def record_evaluation(result: dict, report_dir: Path, folders: dict) -> None:
    """Replace the metrics section of each evaluated model's card ({display name: folder}) with the
    evaluation's figures; a folder without a card (trained before cards existed) gets a whole one."""
    for name, folder in folders.items():
        try:
            _record(result, report_dir, name, Path(folder))
        except Exception as e:  # the report is written; a card that cannot be updated must not hide it
            log.warning("%s: model card not updated (%s: %s)", Path(folder) / CARD_FILE, type(e).__name__, e)


def _record(result: dict, report_dir: Path, name: str, folder: Path) -> None:
    split, system = result["split"], result["systems"][name]
    where = (f"the `{split['name']}` split (`{split['path']}`, {split['paragraphs']} paragraphs), by "
             f"`python -m train.evaluate` on {result['created'][:10]}; full report: `{report_dir}`")
    schema = LabelSchema(json.loads((folder / "config.json").read_text(encoding="utf-8"))["task_schema"])
    section = metrics_section(schema, system, where, system.get("thresholds"), system.get("thresholds_source"))
    path = folder.resolve() / CARD_FILE  # into the folder a `latest` link points at
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if METRICS_START in text and METRICS_END in text:
        head, rest = text.split(METRICS_START, 1)
        text = head + section + rest.split(METRICS_END, 1)[1]
    else:
        text = card_for_folder(folder, schema, section)
    tmp = path.with_name(f".{CARD_FILE}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    log.info("%s: metrics section updated", path)


def score(folder: Path, schema: LabelSchema, records) -> tuple[dict, dict]:
    """The evaluation job's figures (train.metrics) for a model folder on `records`, at its saved
    thresholds (0.5 where none), and those thresholds."""
    from train.inference import Classifier

    clf = Classifier.from_pretrained(folder)
    probs, _ = clf.scores([r["text"] for r in records])
    gold = M.gold_matrix(schema, records)
    at_half, at_saved = M.task_scores(schema, gold, probs), M.task_scores(schema, gold, probs, clf.thresholds)
    figures = {t.name: {"at_0.5": at_half[t.name], "tuned": at_saved[t.name]} if t.kind == MULTI else at_saved[t.name]
               for t in schema.tasks}
    figures["calibration"] = M.calibration(schema, gold, probs)
    figures["per_language"] = M.per_language(schema, records, gold, probs, clf.thresholds)
    return figures, clf.thresholds


# -- the card ----------------------------------------------------------------------------------
def card(cfg, schema: LabelSchema, metrics: dict, train_records, metrics_text: str) -> str:
    info = cfg.data.get("card") or {}
    languages = [lang for lang, _ in Counter(r["lang"] for r in train_records).most_common()]
    name = cfg.run_name
    meta = {"language": languages, "license": info.get("license", "unknown")}
    if info.get("license_name"):
        meta["license_name"] = info["license_name"]
    meta["library_name"] = "transformers"
    meta["pipeline_tag"] = "text-classification"
    meta["tags"] = ["text-classification", "multi-label-classification", "peninsula", *info.get("tags", [])]
    meta["datasets"] = [info.get("dataset", cfg.data.name)]
    meta["metrics"] = ["f1", "accuracy"]
    base = base_model(cfg.model.name_or_path)
    if base:
        meta["base_model"] = base
    meta["model-index"] = [{"name": name, "results": [{
        "task": {"type": "text-classification", "name": "Topic and stance classification"},
        "dataset": {"name": info.get("dataset", cfg.data.name), "type": info.get("dataset", cfg.data.name),
                    "split": "validation"},
        "metrics": [{"type": "f1", "name": f"{t.name} macro-F1 (validation, best epoch, 0.5)",
                     "value": round(float(metrics[f"{t.name}_macro_f1"]), 4)} for t in schema.tasks]}]}]
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=120)
    parts = [f"---\n{front}---\n", f"# {name}\n", summary(cfg, schema, base, train_records, info),
             labels_section(schema, info), usage(schema, cfg.model.text_prefix),
             training(cfg, metrics, train_records), "## Evaluation\n", metrics_text + "\n",
             bullets("Intended use", info.get("intended_use"),
                     "Labelling paragraphs with the labels above; read its predictions before acting on them."),
             bullets("Limitations", info.get("limitations"),
                     "Measured only on the splits below; text unlike the training data may score lower."),
             files_section()]
    if info.get("license_note"):
        parts.append(f"## Licence\n\n{info['license_note']}\n")
    return "\n".join(parts)


def card_for_folder(folder: Path, schema: LabelSchema, metrics_text: str) -> str:
    """A whole card from what a model folder holds (config.yaml, validation_metrics.json)."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(folder / "config.yaml")
    if "card" not in cfg.data:  # a folder trained before cards: the card text of its data config as it is now
        from train.data import data_config

        try:
            OmegaConf.update(cfg, "data.card", data_config(cfg.data.name).get("card"), force_add=True)
        except SystemExit:  # no such data config any more
            pass
    metrics = json.loads((folder / "validation_metrics.json").read_text(encoding="utf-8"))
    records = load_split(split_paths(cfg.data)["train"], schema)
    return card(cfg, schema, metrics, records, metrics_text)


def base_model(name_or_path: str) -> str | None:
    """The hub id of the base model, where there is one (a local folder has none)."""
    if name_or_path in EMBEDDED_BASES:
        return EMBEDDED_BASES[name_or_path]
    looks_like_hub_id = name_or_path.count("/") == 1 and not Path(name_or_path).exists()
    return name_or_path if looks_like_hub_id else None


def summary(cfg, schema, base, train_records, info) -> str:
    tasks = "; ".join(f"**{t.name}** ({'any number of' if t.kind == MULTI else 'exactly one of'} "
                      f"{', '.join(f'`{label}`' for label in t.labels)})" for t in schema.tasks)
    source = f"[{base}](https://huggingface.co/{base})" if base else f"`{cfg.model.name_or_path}`"
    about = f" ({info['dataset_description']})" if info.get("dataset_description") else ""
    return (f"A multilingual paragraph classifier fine-tuned from {source} with one classification head for "
            f"{tasks}. Trained with the `peninsula` toolkit on {len(train_records):,} paragraphs: the training "
            f"split of `{info.get('dataset', cfg.data.name)}`{about}"
            + (" and the data config's extra files" if cfg.data.get("extra_files") else "") + ".\n")


def labels_section(schema: LabelSchema, info) -> str:
    meaning = info.get("labels") or {}
    rows = [[t.name, "multi-label (sigmoid per label)" if t.kind == MULTI else "single-label (softmax)", f"`{label}`",
             meaning.get(label, "")] for t in schema.tasks for label in t.labels]
    return "## Labels\n\n" + table(["task", "kind", "label", "meaning"], rows)


def usage(schema: LabelSchema, prefix: str) -> str:
    multi = [label for t in schema.tasks if t.kind == MULTI for label in t.labels]
    single = [t for t in schema.tasks if t.kind != MULTI]
    lines = ["## How to use\n", "With the toolkit (windows long text, applies the tuned thresholds):\n", "```python",
             "from train.inference import Classifier\n", 'clf = Classifier.from_pretrained("path/to/this/folder")',
             'clf.predict(["Kim Jong Un and Vladimir Putin signed a treaty in Pyongyang."])', "```\n",
             "With plain `transformers` (the head's outputs are logits: a sigmoid per multi-label output, a "
             "softmax per single-label task):\n", "```python", "import numpy as np",
             "from transformers import pipeline\n",
             'pipe = pipeline("text-classification", model="path/to/this/folder", top_k=None, function_to_apply="none")',
             f'logits = {{d["label"]: d["score"] for d in pipe([{json.dumps(prefix + "Seoul proposed military talks.")}])[0]}}']
    if multi:
        lines.append(f"topics = {{t: 1 / (1 + np.exp(-logits[t])) for t in {multi}}}")
    for t in single:
        lines += [f"z = np.array([logits[s] for s in {list(t.labels)}])",
                  f"{t.name} = dict(zip({list(t.labels)}, np.exp(z) / np.exp(z).sum()))"]
    lines += ["```\n", (f"Inputs start with the prefix {json.dumps(prefix)} (`text_prefix` in config.json). " if prefix else "")
              + "Multi-label decisions use the per-label thresholds in `thresholds.json` when present, else 0.5.\n"]
    return "\n".join(lines)


def training(cfg, metrics, train_records) -> str:
    langs = ", ".join(f"{lang} {n}" for lang, n in Counter(r["lang"] for r in train_records).most_common())
    extra = list(cfg.data.get("extra_files") or [])
    items = [f"Paragraphs: {len(train_records):,} ({langs}), from `{cfg.data.files.train}`"
             + "".join(f" and `{f}`" for f in extra) + ".",
             f"Base model: `{cfg.model.name_or_path}`; inputs cut to {cfg.model.max_length} tokens for training.",
             f"Recipe: learning rate {cfg.trainer.learning_rate}, batch {cfg.trainer.per_device_train_batch_size}, up to "
             f"{cfg.trainer.num_train_epochs} epochs with early stopping (ran {metrics.get('epochs_run', 0):.0f}), seed "
             f"{cfg.seed}; {metrics.get('train_runtime', 0) / 60:.1f} min. The full configuration is `config.yaml`.",
             "Validation macro-F1 at the kept epoch (threshold 0.5): "
             + ", ".join(f"{k.removesuffix('_macro_f1')} {v:.3f}" for k, v in metrics.items() if k.endswith("_macro_f1"))
             + "."]
    return "## Training\n\n" + "\n".join(f"- {item}" for item in items) + "\n"


def bullets(title: str, items, fallback: str) -> str:
    return f"## {title}\n\n" + "\n".join(f"- {item}" for item in (items or [fallback])) + "\n"


def files_section() -> str:
    return ("## Files\n\n`model.safetensors`, `config.json` (`id2label`, `task_schema`, `text_prefix`), the tokenizer, "
            "`config.yaml` (the run's configuration), `label_schema.json`, `validation_metrics.json`, and where "
            "written `thresholds.json` (tuned per-label thresholds) and `onnx/` (ONNX Runtime copies).\n")


# -- the metrics section -----------------------------------------------------------------------
def metrics_section(schema: LabelSchema, figures: dict, where: str, thresholds: dict | None,
                    thresholds_source: str | None = None) -> str:
    """The text between the markers: headline, per label, per language and calibration, from a
    dict shaped like one system of the evaluation job's metrics.json."""
    tuned = any((thresholds or {}).get(t.name) for t in schema.tasks if t.kind == MULTI)
    decision = "tuned thresholds" if tuned else "threshold 0.5"
    rows = []
    for t in schema.tasks:
        if t.kind == MULTI:
            rows.append([t.name, decision, with_ci(figures[t.name]["tuned"]), num(figures[t.name]["tuned"]["micro_f1"]), ""])
            if tuned:
                rows.append([t.name, "threshold 0.5", with_ci(figures[t.name]["at_0.5"]),
                             num(figures[t.name]["at_0.5"]["micro_f1"]), ""])
        else:
            rows.append([t.name, "argmax", with_ci(figures[t.name]), "", num(figures[t.name]["accuracy"])])
    note = f" Thresholds: {thresholds_source}." if thresholds_source else (
        " Thresholds: `thresholds.json`." if tuned else "")
    out = [METRICS_START, f"\nMeasured on {where}.{note}\n",
           table(["task", "decision", "macro-F1 [95% CI]", "micro-F1", "accuracy"], rows)]
    label_rows = []
    for t in schema.tasks:
        scores = figures[t.name]["tuned"] if t.kind == MULTI else figures[t.name]
        label_rows += [[t.name, f"`{label}`", scores["per_label"][label]["support"], num(scores["per_label"][label]["precision"]),
                        num(scores["per_label"][label]["recall"]), num(scores["per_label"][label]["f1"])]
                       for label in t.labels]
    out += ["Per label:\n", table(["task", "label", "support", "precision", "recall", "F1"], label_rows)]
    lang_rows = [[lang, f["paragraphs"]] + [num(f[f"{t.name}_macro_f1"]) for t in schema.tasks]
                 for lang, f in figures["per_language"].items()]
    out += ["Per language (macro-F1; a few paragraphs make a noisy figure):\n",
            table(["language", "paragraphs"] + [t.name for t in schema.tasks], lang_rows)]
    ece = [[t.name, num(figures["calibration"][t.name]["ece"])] for t in schema.tasks]
    out += ["Calibration, expected calibration error (10 bins; lower is better; multi-label: every label's "
            "score against its 0/1 gold, single-label: the top probability against being right):\n",
            table(["task", "ECE"], ece), METRICS_END]
    return "\n".join(out)
