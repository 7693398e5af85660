"""The readable parts of a report folder: report.md (GitHub-flavoured markdown that reads as is on a
code host), PNG plots (matplotlib, Agg backend: no display needed) and the terminal summary.
Every number shown is read from metrics.json's dict, so the two never disagree.

    write(folder, result, schema)      # report.md, f1_per_label.png, reliability.png, confusion_<model>.png
    print(summary(result, schema, folder))
"""

import re
from pathlib import Path

from train.labels import MULTI, LabelSchema


def write(folder: Path, result: dict, schema: LabelSchema) -> None:
    plots = {"f1": plot_label_f1(folder, result, schema), "reliability": plot_reliability(folder, result, schema),
             "confusion": {name: plot_confusion(folder, name, s, schema) for name, s in models(result).items()}}
    (folder / "report.md").write_text(markdown(result, schema, plots), encoding="utf-8")


def models(result) -> dict:
    return {n: s for n, s in result["systems"].items() if s["kind"] == "model"}


def headline_scores(system: dict, task) -> dict:
    """A task's scores as reported: multi-label tasks at the system's tuned thresholds."""
    return system[task.name]["tuned"] if task.kind == MULTI else system[task.name]


# -- formatting ---------------------------------------------------------------------------------
def num(x, digits=3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def with_ci(scores: dict) -> str:
    ci = scores.get("macro_f1_ci")
    return num(scores["macro_f1"]) + (f" [{num(ci[0])}, {num(ci[1])}]" if ci else "")


def cell(text: str, limit: int = 220) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = text if len(text) <= limit else text[:limit - 1] + "…"
    return text.replace("|", "\\|")


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


# -- markdown -----------------------------------------------------------------------------------
def markdown(result: dict, schema: LabelSchema, plots: dict) -> str:
    split, cfg = result["split"], result["config"]
    langs = ", ".join(f"{lang} {n}" for lang, n in split["languages"].items())
    out = [f"# Evaluation on `{split['name']}`\n",
           f"{result['created']}; `{split['path']}`: {split['paragraphs']} paragraphs ({langs}). "
           f"Evaluation took {result['timing_s']['total']:.0f} s.\n"]
    if split["thresholds_tuned_on_this_split"]:
        out.append("> **Note:** thresholds were tuned on this very split, so tuned figures are optimistic.\n")
    out += [comparison(result, schema, cfg), per_label(result, schema, plots), per_language(result, schema),
            calibration(result, schema, plots)]
    if any("articles" in s for s in result["systems"].values()):
        out.append(articles(result, schema))
    for name, system in models(result).items():
        out.append(model_details(name, system, schema, plots["confusion"][name]))
    out.append(NOTES.format(resamples=cfg["bootstrap"]["resamples"], seed=cfg["bootstrap"]["seed"],
                            bins=cfg["calibration_bins"]))
    return "\n".join(out)


def comparison(result, schema, cfg) -> str:
    title = "Comparison" if len(models(result)) > 1 else "Summary"
    header = ["system", "kind"]
    for t in schema.tasks:
        header += [f"{t.name} macro-F1 [95% CI]", f"{t.name} " + ("micro-F1" if t.kind == MULTI else "accuracy")]
    rows = []
    for name, s in result["systems"].items():
        row = [f"**{name}**" if s["kind"] == "model" else name, s["kind"]]
        for t in schema.tasks:
            scores = headline_scores(s, t)
            row += [with_ci(scores), num(scores["micro_f1" if t.kind == MULTI else "accuracy"])]
        rows.append(row)
    text = [f"## {title}\n", table(header, rows)]
    if any(t.kind == MULTI for t in schema.tasks):
        text.append("Multi-label tasks at per-label thresholds tuned on the validation split (each system its "
                    "own); the figures at 0.5 are in each model's section.\n")
    margin_rows = [[m, b] + [f"{d[f'{t.name}_macro_f1']:+.3f}" for t in schema.tasks]
                   for m, per in result["margins"].items() for b, d in per.items()]
    if margin_rows:
        text += ["### Margins over the baselines (fine-tuned minus baseline, macro-F1)\n",
                 table(["model", "baseline"] + [t.name for t in schema.tasks], margin_rows)]
    baselines = [(n, s) for n, s in result["systems"].items() if s["kind"] == "baseline"]
    if baselines:
        text.append("Baselines (trained on `" + str(cfg["data"]["files"]["train"]) + "`): "
                    + "; ".join(f"**{n}**: {s['description']}" for n, s in baselines) + ".\n")
    return "\n".join(text)


def per_label(result, schema, plots) -> str:
    names = list(result["systems"])
    text = ["## F1 per label\n"]
    for t in schema.tasks:
        rows = [[label, headline_scores(result["systems"][names[0]], t)["per_label"][label]["support"]]
                + [num(headline_scores(result["systems"][n], t)["per_label"][label]["f1"]) for n in names]
                for label in t.labels]
        text += [f"**{t.name}**\n", table(["label", "support"] + names, rows)]
    text.append(f"![F1 per label and system]({plots['f1']})\n")
    return "\n".join(text)


def per_language(result, schema) -> str:
    names = list(result["systems"])
    first = result["systems"][names[0]]["per_language"]
    rows = [[lang, first[lang]["paragraphs"]]
            + [" / ".join(num(result["systems"][n]["per_language"][lang][f"{t.name}_macro_f1"]) for t in schema.tasks)
               for n in names] for lang in first]
    return "\n".join(["## Per language\n", "Macro-F1 " + " / ".join(t.name for t in schema.tasks) + ":\n",
                      table(["language", "paragraphs"] + names, rows)])


def calibration(result, schema, plots) -> str:
    def before(s, t):
        return num(s["calibration_before"][t.name]["ece"]) if "calibration_before" in s else ""
    rows = [[n] + [v for t in schema.tasks for v in (num(s["calibration"][t.name]["ece"]), before(s, t))]
            for n, s in result["systems"].items()]
    header = ["system"] + [h for t in schema.tasks for h in (t.name, f"{t.name} before calibration")]
    return "\n".join(["## Calibration\n", "Expected calibration error (lower is better) of the scores as served; "
                      "for fine-tuned models also of the raw head before the calibration fitted on validation "
                      "was folded in (`calibration.json`; reconstructed from the served scores):\n",
                      table(header, rows), f"![Reliability diagrams]({plots['reliability']})\n"])


def articles(result, schema) -> str:
    first = next(s["articles"] for s in result["systems"].values())
    source = f"{first['gold_from_file']} of {first['articles']} articles have gold labels in the seed articles file"
    source += ("." if first["gold_from_file"] == first["articles"] else
               "; the rest are aggregated from their gold paragraphs by the same rule.")
    header, rows = ["system"], []
    for t in schema.tasks:
        header += [f"{t.name} macro-F1", f"{t.name} " + ("micro-F1" if t.kind == MULTI else "accuracy")]
    systems = [(n, s["articles"]) for n, s in result["systems"].items()]
    if "articles_rule_on_gold_paragraphs" in result:
        systems.append(("*gold paragraphs + the rule*", result["articles_rule_on_gold_paragraphs"]))
    for n, a in systems:
        rows.append([n] + [v for t in schema.tasks for v in
                           (num(a[t.name]["macro_f1"]), num(a[t.name]["micro_f1" if t.kind == MULTI else "accuracy"]))])
    text = ["## Articles\n", "Paragraphs grouped by `doc_id`; predicted paragraph labels aggregated by the "
            f"annotation guide's rule (train/articles.py). {source} The last row, where present, applies the "
            "same rule to the gold paragraph labels (its agreement with the gold article labels).\n",
            table(header, rows)]
    columns = [f"{t.name} {w}" for t in schema.tasks for w in ("gold", "predicted")]
    for n, s in models(result).items():
        docs = [[d["doc_id"], d["paragraphs"]]
                + [fmt_labels(d[w][t.name]) for t in schema.tasks for w in ("gold", "predicted")]
                for d in s["articles"]["documents"]]
        text += [f"**{n}**, per article:\n", table(["doc_id", "paragraphs"] + columns, docs)]
    return "\n".join(text)


def fmt_labels(labels) -> str:
    return (", ".join(labels) or "(none)") if isinstance(labels, list) else labels


def model_details(name, s, schema, confusion_png) -> str:
    text = [f"## Model `{name}`\n", f"`{s['description']}`; thresholds: {s['thresholds_source']}.\n"]
    for t in schema.tasks:
        if t.kind == MULTI:
            half, tuned = s[t.name]["at_0.5"], s[t.name]["tuned"]
            cuts = s["thresholds"].get(t.name, {})
            rows = [[l, half["per_label"][l]["support"], num(cuts.get(l, 0.5), 2)]
                    + [num(sc["per_label"][l][k]) for sc in (half, tuned) for k in ("precision", "recall", "f1")]
                    for l in t.labels]
            summary_rows = [[at, num(sc["micro_f1"]), with_ci(sc), num(sc["subset_accuracy"]),
                             num(sc["hamming_loss"]), num(sc["empty_kept"])]
                            for at, sc in (("0.5", half), ("tuned", tuned))]
            text += [f"### {t.name} (multi-label)\n",
                     table(["label", "support", "tuned threshold", "P @0.5", "R @0.5", "F1 @0.5", "P tuned",
                            "R tuned", "F1 tuned"], rows),
                     table(["thresholds", "micro-F1", "macro-F1 [95% CI]", "subset accuracy", "Hamming loss",
                            f"no gold {t.name}: kept empty (of {half['empty_gold']})"], summary_rows)]
        else:
            sc = s[t.name]
            rows = [[l, v["support"], num(v["precision"]), num(v["recall"]), num(v["f1"])]
                    for l, v in sc["per_label"].items()]
            matrix = [[f"**{l}**"] + row for l, row in zip(t.labels, sc["confusion_matrix"])]
            text += [f"### {t.name} (single-label)\n",
                     f"Accuracy {num(sc['accuracy'])}, macro-F1 {with_ci(sc)}.\n",
                     table(["class", "support", "precision", "recall", "F1"], rows),
                     "Confusion matrix (rows: gold, columns: predicted):\n",
                     table(["gold \\ predicted"] + list(t.labels), matrix),
                     f"![{t.name} confusion matrix]({confusion_png})\n"]
    langs = s["per_language"]
    keys = [k for k in next(iter(langs.values())) if k != "paragraphs"]
    text += ["### Per language (tuned thresholds)\n",
             table(["language", "paragraphs"] + [k.replace("_", " ") for k in keys],
                   [[l, v["paragraphs"]] + [num(v[k]) for k in keys] for l, v in langs.items()])]
    for t in schema.tasks:
        errors = s["errors"][t.name]
        if t.kind == MULTI:
            rows = [[num(e["confidence"]), e["label"], e["error"], f"`{e['id']}`", e["lang"], cell(e["text"])]
                    for e in errors]
            header = ["confidence", "label", "error", "id", "lang", "text"]
        else:
            rows = [[num(e["confidence"]), e["gold"], e["predicted"], f"`{e['id']}`", e["lang"], cell(e["text"])]
                    for e in errors]
            header = ["confidence", "gold", "predicted", "id", "lang", "text"]
        text += [f"### Most confident {t.name} errors ({len(errors)})\n", table(header, rows) if rows else "None.\n"]
    return "\n".join(text)


NOTES = """## How these numbers were computed

- Metric modules in train/metrics/ (`evaluate` modules built on scikit-learn); labels with no gold
  and no predicted example score F1 0 (zero_division=0), which weighs on small per-language sets.
- 95% CIs: percentile bootstrap over paragraphs, {resamples} resamples, seed {seed}.
- Calibration: {bins} equal-width bins (scikit-learn's calibration_curve); multi-label: every
  (paragraph, label) score against its gold; single-label: the predicted class's probability
  against being right. ECE: the bins' |observed - mean score| weighted by their share.
- Subset accuracy: the whole label set right; Hamming loss: the share of wrong (paragraph, label)
  decisions; "kept empty": of the paragraphs with no gold label, the share predicted empty.
- Full per-paragraph predictions and scores: predictions.jsonl; every figure: metrics.json.
"""


# -- plots ---------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: no display, no GUI toolkit
    import matplotlib.pyplot as plt
    return plt


def plot_label_f1(folder, result, schema) -> str:
    import numpy as np

    plt = _pyplot()
    names = list(result["systems"])
    fig, axes = plt.subplots(1, len(schema.tasks), figsize=(5 * len(schema.tasks) + 1, 4), squeeze=False)
    width = 0.8 / len(names)
    for ax, t in zip(axes[0], schema.tasks):
        x = np.arange(len(t.labels))
        for k, n in enumerate(names):
            f1 = [headline_scores(result["systems"][n], t)["per_label"][l]["f1"] for l in t.labels]
            ax.bar(x + k * width - 0.4 + width / 2, f1, width, label=n)
        ax.set_xticks(x, t.labels, rotation=20)
        ax.set_ylim(0, 1)
        ax.set_title(f"{t.name}: F1 per label")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(names), 5), fontsize=8)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return _save(fig, folder, "f1_per_label.png")


def plot_reliability(folder, result, schema) -> str:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(schema.tasks), figsize=(5 * len(schema.tasks), 4.5), squeeze=False)
    for ax, t in zip(axes[0], schema.tasks):
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
        for n, s in result["systems"].items():
            c = s["calibration"][t.name]
            ax.plot(c["prob_pred"], c["prob_true"], marker="o", ms=3, label=f"{n} (ECE {c['ece']:.3f})")
        ax.set_xlabel("mean score in bin" if t.kind == MULTI else "confidence (predicted class)")
        ax.set_ylabel("share gold" if t.kind == MULTI else "share right")
        ax.set_title(f"{t.name}: reliability")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, folder, "reliability.png")


def plot_confusion(folder, name, system, schema) -> str | None:
    from sklearn.metrics import ConfusionMatrixDisplay
    import numpy as np

    single = [t for t in schema.tasks if t.kind != MULTI]
    if not single:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(single), figsize=(4.5 * len(single), 4), squeeze=False)
    for ax, t in zip(axes[0], single):
        ConfusionMatrixDisplay(np.array(system[t.name]["confusion_matrix"]), display_labels=t.labels).plot(
            ax=ax, colorbar=False, cmap="Blues")
        ax.set_title(f"{name}: {t.name}", fontsize=9)
    fig.tight_layout()
    return _save(fig, folder, f"confusion_{slug(name)}.png")


def _save(fig, folder, filename) -> str:
    fig.savefig(Path(folder) / filename, dpi=110)
    _pyplot().close(fig)
    return filename


# -- terminal -----------------------------------------------------------------------------------
def summary(result: dict, schema: LabelSchema, out_dir) -> str:
    """A few lines for the terminal: macro-F1 with CIs per system, article scores, where the report is."""
    split = result["split"]
    lines = [f"\n{split['name']}: {split['paragraphs']} paragraphs, macro-F1 [95% CI] "
             "(multi-label tasks at tuned thresholds)"]
    for name, s in result["systems"].items():
        lines.append(f"  {name[:34]:<34} " + "   ".join(f"{t.name} {with_ci(headline_scores(s, t))}"
                                                            for t in schema.tasks))
    for name, s in models(result).items():
        lines.append(f"  {'ECE ' + name[:30]:<34} " + "   ".join(
            f"{t.name} {num(s['calibration'][t.name]['ece'])}"
            + (f" (before calibration {num(s['calibration_before'][t.name]['ece'])})" if "calibration_before" in s
               else "") for t in schema.tasks))
    for name, s in models(result).items():
        if "articles" in s:
            a = s["articles"]
            lines.append(f"  articles, {a['articles']} ({name}): " + "   ".join(
                f"{t.name} macro-F1 {num(a[t.name]['macro_f1'])}" for t in schema.tasks))
    lines.append(f"report: {Path(out_dir) / 'report.md'} ({result['timing_s']['total']:.0f} s)")
    return "\n".join(lines)
