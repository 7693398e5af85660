"""`python -m train.evaluate`: score model folders on one split beside baselines, write a report.

    python -m train.evaluate                                    # models/latest on the test split
    python -m train.evaluate split=seeds                        # + article-level metrics
    python -m train.evaluate models='[models/a,models/b]' split=validation baselines=false
    python -m train.evaluate split=data/extra.jsonl tune_thresholds=true out_dir=reports/extra

`evaluate(cfg)` reads in phases: checks (split, model folders, label schemas, output folder) before
anything is loaded; data; each model's scores, with its per-topic thresholds tuned on validation
and saved to `thresholds.json` when it has none (or `tune_thresholds=true`); baselines trained on
the training split and tuned the same way; metrics through train/metrics; then the report folder,
written under a temporary name and renamed into place. It returns metrics.json's content.
"""

import json
import logging
import shutil
import sys
import time
from pathlib import Path

import hydra
import numpy as np
from omegaconf import ListConfig, OmegaConf

from train import calibration
from train import metrics as M
from train import model_card
from train import thresholds as T
from train.articles import DEFAULT_STANCE_METHOD, STANCE_METHODS, aggregate
from train.data import DataError, load_split, project_path, split_paths
from train.files import remove_stale_temps, temp_path
from train.model_folder import THRESHOLDS_FILE, ModelFolderError, check_model_folder
from train.labels import MULTI, LabelSchema, check_schema_matches
from train.options import OptionError, boolean, non_negative_int, one_of, positive_int

log = logging.getLogger("train.evaluate")


class EvaluationError(Exception):
    """Bad input to an evaluation: the message says what is wrong and how to fix it."""


def evaluate(cfg) -> dict:
    """Run one evaluation described by a composed `configs/evaluate.yaml`; return metrics.json's dict."""
    started = time.perf_counter()
    check_options(cfg)
    schema = LabelSchema(cfg.data.schema)
    split_name, split_path = resolve_split(cfg)
    folders = [check_model(project_path(m), schema, cfg.data.name) for m in model_list(cfg.models)]
    baseline_names = chosen_baselines(cfg.baselines)
    out_dir = project_path(cfg.out_dir)
    if out_dir.exists():
        raise EvaluationError(f"{out_dir}: already exists; choose another out_dir (reports are never overwritten)")
    remove_stale_temps(out_dir)  # a killed evaluation's half-written report folder
    records = load_split(split_path, schema)
    paths = split_paths(cfg.data)
    val_records = load_split(paths["validation"], schema)  # for thresholds (models and baselines)
    texts, val_texts = [r["text"] for r in records], [r["text"] for r in val_records]
    gold, val_gold = M.gold_matrix(schema, records), M.gold_matrix(schema, val_records)
    same_as_validation = split_path.resolve() == paths["validation"].resolve()
    grid = T.threshold_grid(**cfg.threshold_grid)
    log.info("split %s: %d paragraphs (%s)", split_name, len(records), split_path)

    systems, timing = [], {}
    for folder, name in zip(folders, display_names(folders)):
        tick = time.perf_counter()
        systems.append(score_model(folder, name, cfg, schema, (texts, headlines(records)),
                                   (val_texts, headlines(val_records)), val_gold, grid, same_as_validation))
        timing[name] = time.perf_counter() - tick
    if baseline_names:
        from train.baselines import build_all

        tick = time.perf_counter()
        train_records = load_split(paths["train"], schema)
        for baseline in build_all(schema, train_records, probe_base(folders[0]), cfg.baseline_max_iter,
                                  cfg.batch_size, cfg.progress, baseline_names):
            val_probs = baseline.scores(val_texts)
            probs = val_probs if same_as_validation else baseline.scores(texts)
            systems.append({"name": baseline.name, "kind": "baseline", "description": baseline.description,
                            "probs": probs, "thresholds": T.tune(schema, val_gold, val_probs, grid),
                            "thresholds_source": "tuned on validation (kept in the report only)"})
        timing["baselines"] = time.perf_counter() - tick

    tick = time.perf_counter()
    articles = read_gold_articles(cfg, schema) if split_name == "seeds" else None
    result = {"created": time.strftime("%Y-%m-%d %H:%M:%S %z"),
              "split": {"name": split_name, "path": str(split_path), "paragraphs": len(records),
                        "languages": dict(M.per_language_counts(records)),
                        "thresholds_tuned_on_this_split": same_as_validation},
              "systems": {s["name"]: system_metrics(s, cfg, schema, records, gold, articles) for s in systems}}
    if articles:  # the rule's own ceiling: gold paragraph labels aggregated, against the gold articles
        result["articles_rule_on_gold_paragraphs"] = article_metrics(schema, records, gold, articles, cfg.article_stance)
    result["margins"] = margins(schema, result["systems"])
    timing["metrics"] = time.perf_counter() - tick
    result["timing_s"] = {**timing, "total": time.perf_counter() - started}
    result["config"] = OmegaConf.to_container(cfg, resolve=True)
    write_report_folder(out_dir, result, records, systems, schema)
    model_card.record_evaluation(result, out_dir, {s["name"]: Path(s["path"]) for s in systems if s["kind"] == "model"})
    return result


# -- checks ------------------------------------------------------------------------------------
def check_options(cfg):
    """OptionError for a value that cannot work, before any data or model is loaded."""
    positive_int("batch_size", cfg.batch_size)
    positive_int("threads", cfg.threads, optional=True)
    positive_int("calibration_bins", cfg.calibration_bins)
    positive_int("baseline_max_iter", cfg.baseline_max_iter)
    non_negative_int("top_errors", cfg.top_errors)
    one_of("article_stance", cfg.article_stance, tuple(STANCE_METHODS))
    non_negative_int("bootstrap.resamples", cfg.bootstrap.resamples)
    non_negative_int("bootstrap.seed", cfg.bootstrap.seed)
    for name in ("tune_thresholds", "progress"):
        boolean(name, cfg[name])
    chosen_baselines(cfg.baselines)  # true, false or a list of names
    confidence = cfg.bootstrap.confidence
    if not isinstance(confidence, (int, float)) or isinstance(confidence, bool) or not 0 < confidence < 1:
        raise OptionError("bootstrap.confidence", confidence, "must be between 0 and 1 (e.g. 0.95)")
    grid = cfg.threshold_grid
    numbers = all(isinstance(grid[k], (int, float)) and not isinstance(grid[k], bool) for k in ("start", "stop", "step"))
    if not numbers or not (0 < grid.start <= grid.stop < 1 and grid.step > 0):
        raise OptionError("threshold_grid", dict(grid), "expected 0 < start <= stop < 1 and step > 0")


def resolve_split(cfg) -> tuple[str, Path]:
    """A split named in the data config (train, validation, test, seeds), or a path to a JSONL file."""
    name = str(cfg.split)
    if name in cfg.data.files:
        return name, project_path(cfg.data.files[name])
    path = project_path(name)
    if path.suffix in (".jsonl", ".json") or path.exists():
        if not path.is_file():
            raise EvaluationError(f"split={name}: {path} not found (expected a JSONL file in the corpus format)")
        named = [n for n, p in split_paths(cfg.data).items() if p.resolve() == path.resolve()]
        return (named[0] if named else path.stem), path  # a named split's file counts as that split
    raise EvaluationError(f"unknown split {name!r}: expected one of {', '.join(cfg.data.files)} "
                          f"(configs/data/{cfg.data.name}.yaml) or a path to a .jsonl file in the corpus format")


def chosen_baselines(setting) -> tuple[str, ...]:
    """`baselines`: true (all), false (none) or a list of names from train.baselines.NAMES."""
    from train.baselines import NAMES

    if isinstance(setting, bool):
        return NAMES if setting else ()
    names = [setting] if isinstance(setting, str) else list(setting) if isinstance(setting, ListConfig | list) else None
    if names is None or set(names) - set(NAMES):
        raise OptionError("baselines", setting if names is None or isinstance(setting, str) else names,
                          f"expected true, false or a list of {', '.join(NAMES)}")
    return tuple(names)


def model_list(models) -> list[str]:
    models = [models] if isinstance(models, str) else list(models)
    if not models:
        raise EvaluationError("models=[]: name at least one model folder, e.g. models=models/latest")
    return [str(m) for m in models]


def check_model(folder: Path, schema: LabelSchema, data_name: str) -> Path:
    check_model_folder(folder)  # ModelFolderError names what is missing
    try:
        check_schema_matches(folder, schema, data_name)
    except ValueError as e:
        raise EvaluationError(str(e)) from None
    return folder


def display_names(folders) -> list[str]:
    """Folder names (the target of a `latest` link), made unique with #2, #3 ..."""
    names, seen = [], {}
    for f in folders:
        base = Path(f).resolve().name
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return names


def probe_base(folder: Path) -> dict | None:
    """The base model a folder was fine-tuned from (its config.yaml), for the embedding probe."""
    path = folder / "config.yaml"
    if not path.is_file():
        log.warning("%s: missing, so the embedding-probe baseline is skipped", path)
        return None
    model = OmegaConf.load(path).model
    return {"name_or_path": model.name_or_path, "text_prefix": model.get("text_prefix", ""),
            "max_length": model.get("max_length", 128)}


# -- scoring -----------------------------------------------------------------------------------
def headlines(records) -> list[str | None]:
    """Each record's article headline, which a headline-context model reads with the paragraph."""
    return [r.get("headline") for r in records]


def score_model(folder, name, cfg, schema, split, validation, val_gold, grid, same_as_validation) -> dict:
    """`split`, `validation`: (texts, headlines) of the evaluated split and of the validation split."""
    from train.inference import Classifier

    clf = Classifier.from_pretrained(folder, threads=cfg.threads)  # a corrupt thresholds.json is a ModelFolderError
    log.info("%s: scored with %s %s", name, clf.engine, clf.precision)
    saved = clf.thresholds if (folder / THRESHOLDS_FILE).is_file() else None
    val_probs = None
    if saved is None or cfg.tune_thresholds:
        val_probs, _ = clf.scores(validation[0], cfg.batch_size, cfg.progress, contexts=validation[1])
        saved = T.tune(schema, val_gold, val_probs, grid)
        log.info("%s: thresholds tuned on validation %s -> %s", name, saved, T.save(folder, saved))
        source = "tuned on validation now, saved to thresholds.json"
    else:
        source = "thresholds.json (tuned earlier)"
    if same_as_validation and val_probs is not None:
        probs = val_probs
    else:
        probs, _ = clf.scores(split[0], cfg.batch_size, cfg.progress, contexts=split[1])
    system = {"name": name, "kind": "model", "path": str(folder), "description": f"fine-tuned ({folder})",
              "probs": probs, "thresholds": saved, "thresholds_source": source}
    try:
        fitted = calibration.load(folder)
    except ValueError as e:
        raise EvaluationError(str(e)) from None
    if fitted:  # the head before calibration was folded in, for the report's before/after ECE
        raw = calibration.invert(schema, fitted, calibration.logits_from_probabilities(schema, probs))
        system["raw_probs"] = schema.probabilities(raw)
    return system


def system_metrics(system, cfg, schema, records, gold, articles) -> dict:
    probs, tuned = system["probs"], system["thresholds"]
    boot = dict(bootstrap=cfg.bootstrap.resamples, seed=cfg.bootstrap.seed, confidence=cfg.bootstrap.confidence)
    # intervals at 0.5 for fine-tuned models only: the report shows baselines at their tuned thresholds
    at_half = M.task_scores(schema, gold, probs, None, **(boot if system["kind"] == "model" else {}))
    at_tuned = M.task_scores(schema, gold, probs, tuned, **boot)
    out = {k: system[k] for k in ("kind", "description", "thresholds", "thresholds_source")}
    for task in schema.tasks:  # thresholds change multi-label decisions only
        out[task.name] = {"at_0.5": at_half[task.name], "tuned": at_tuned[task.name]} if task.kind == MULTI \
            else at_tuned[task.name]
    out["calibration"] = M.calibration(schema, gold, probs, cfg.calibration_bins)
    if "raw_probs" in system:
        out["calibration_before"] = M.calibration(schema, gold, system["raw_probs"], cfg.calibration_bins)
    out["per_language"] = M.per_language(schema, records, gold, probs, tuned)
    if articles is not None:
        out["articles"] = article_metrics(schema, records, M.decide(schema, probs, tuned), articles,
                                          cfg.article_stance, probs)
    if system["kind"] == "model":
        out["errors"] = M.confident_errors(schema, records, gold, probs, tuned, cfg.top_errors)
    return out


def margins(schema, systems: dict) -> dict:
    """Fine-tuned minus each baseline, macro-F1 per task (multi-label tasks at tuned thresholds)."""
    def macro(s, task):
        return (s[task.name]["tuned"] if task.kind == MULTI else s[task.name])["macro_f1"]
    models = {n: s for n, s in systems.items() if s["kind"] == "model"}
    baselines = {n: s for n, s in systems.items() if s["kind"] == "baseline"}
    return {m: {b: {f"{t.name}_macro_f1": macro(ms, t) - macro(bs, t) for t in schema.tasks}
                for b, bs in baselines.items()} for m, ms in models.items()}


# -- articles (split=seeds) --------------------------------------------------------------------
def read_gold_articles(cfg, schema) -> dict | None:
    """{doc_id: {task: labels}} from `seed_articles`, or {} when that file is absent (then gold
    article labels are aggregated from the gold paragraphs); None when the schema has no topics and
    stance (the guide's article rule is for those)."""
    if not {"topics", "stance"} <= {t.name for t in schema.tasks}:
        return None
    path = project_path(cfg.seed_articles) if cfg.seed_articles else None
    if path is None or not path.is_file():
        return {}
    gold = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            schema.encode(record)  # unknown labels raise
            gold[record["doc_id"]] = {t.name: record[t.name] for t in schema.tasks}
        except (json.JSONDecodeError, KeyError, ValueError, TypeError) as e:
            raise EvaluationError(f"{path}:{number}: article: {type(e).__name__}: {e} "
                                  f"(expected doc_id, topics and stance in the guide's labels)") from None
    return gold


def article_metrics(schema, records, decisions, gold_articles: dict, stance_method: str = DEFAULT_STANCE_METHOD,
                    probs=None) -> dict:
    """Paragraphs grouped by doc_id in file order; predicted paragraph labels aggregated (topics by the
    guide's rule, stance by `stance_method`, train.articles) and scored against the gold article labels.
    `probs`: the paragraphs' probabilities, which score_weighted reads."""
    predicted = M.as_labels(schema, decisions)
    if probs is not None:
        for pred, row in zip(predicted, probs):
            for t in schema.tasks:
                pred[f"{t.name}_scores"] = dict(zip(t.labels, row[t.slice].tolist()))
    documents = {}
    for i, r in enumerate(records):
        documents.setdefault(r.get("doc_id") or r["id"], []).append(i)
    gold_rows, pred_rows, rows, from_file = [], [], [], 0
    for doc, idx in documents.items():
        pred = aggregate([{"text": records[i]["text"], **predicted[i]} for i in idx], stance_method=stance_method)
        gold = gold_articles.get(doc)
        from_file += gold is not None
        gold = gold or aggregate([records[i] for i in idx])
        gold_rows.append(schema.encode(gold))
        pred_rows.append(schema.encode(pred))
        rows.append({"doc_id": doc, "paragraphs": len(idx), "gold": gold, "predicted": pred})
    scores = M.task_scores(schema, np.array(gold_rows, dtype=int), np.array(pred_rows, dtype=float))
    return {"articles": len(documents), "gold_from_file": from_file, **scores, "documents": rows}


# -- output ------------------------------------------------------------------------------------
def prediction_rows(records, systems, schema):
    """One JSON line per paragraph: gold, and per system its labels at tuned and 0.5 thresholds and scores."""
    labels = {s["name"]: (M.as_labels(schema, M.decide(schema, s["probs"], s["thresholds"])),
                          M.as_labels(schema, M.decide(schema, s["probs"]))) for s in systems}
    multi = [t for t in schema.tasks if t.kind == MULTI]
    for i, r in enumerate(records):
        row = {k: r[k] for k in ("id", "lang", "doc_id", "source") if k in r}
        row["text"] = r["text"]
        row["gold"] = {t.name: r[t.name] for t in schema.tasks}
        row["predictions"] = {}
        for s in systems:
            tuned, half = labels[s["name"]][0][i], labels[s["name"]][1][i]
            pred = {**tuned, **{f"{t.name}_at_0.5": half[t.name] for t in multi}}
            pred.update({f"{t.name}_scores": dict(zip(t.labels, map(float, s["probs"][i, t.slice])))
                         for t in schema.tasks})
            row["predictions"][s["name"]] = pred
        yield row


def write_report_folder(out_dir: Path, result, records, systems, schema):
    """Everything under `.<name>.tmp<pid>` first; renamed into place only when complete."""
    from train import report

    tmp = temp_path(out_dir)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with (tmp / "predictions.jsonl").open("w", encoding="utf-8") as f:
            for row in prediction_rows(records, systems, schema):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        (tmp / "metrics.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        report.write(tmp, result, schema)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("report written to %s", out_dir)


@hydra.main(version_base="1.3", config_path="../configs", config_name="evaluate")
def main(cfg) -> None:
    from train import report

    try:
        result = evaluate(cfg)
    except (EvaluationError, ModelFolderError, OptionError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # the temporary report folder is already removed
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except DataError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        print(f"evaluation stopped: {len(e.problems)} problem(s) in the data", file=sys.stderr)
        sys.exit(2)
    print(report.summary(result, LabelSchema(cfg.data.schema), project_path(cfg.out_dir)))


if __name__ == "__main__":
    main()
