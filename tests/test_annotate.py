"""Choosing paragraphs to label and bringing labels back: uncertainty, diversity and no repeats;
Label Studio tasks and labelling config; CSV round trip; every import problem named by file,
record, task and field, with nothing written."""

import csv
import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from conftest import PROJECT, make_records, tiny_overrides, write_jsonl
from train.label_studio import read_export
from train.labels import LabelSchema
from train.selection import choose, priority, task_uncertainty

SCHEMA = LabelSchema([{"name": "topics", "kind": "multi_label", "labels": ["summitry", "sanctions", "russia_ties", "inter_korean"]},
                      {"name": "stance", "kind": "single_label", "labels": ["positive", "negative", "neutral"]}])


@pytest.fixture(scope="module")
def model(tmp_path_factory, tiny_model_dir):
    from hydra import compose, initialize_config_dir

    from train.fit import train

    tmp = tmp_path_factory.mktemp("annotate")
    files = {s: write_jsonl(tmp / f"data/{s}.jsonl", make_records(n, i, s[:2]))
             for i, (s, n) in enumerate([("train", 96), ("validation", 24), ("test", 24)])}
    with initialize_config_dir(config_dir=str(PROJECT / "configs"), version_base="1.3"):
        train(compose("train", overrides=tiny_overrides(tmp, tiny_model_dir, files, **{"trainer.num_train_epochs": 2})))
    return {"dir": tmp / "models/tiny-run", "files": files}


def annotate(*args):
    return subprocess.run([sys.executable, "-m", "train.annotate", *map(str, args)], cwd=PROJECT,
                          capture_output=True, text=True, timeout=300)


def select_here(capsys, *overrides) -> str:
    """`python -m train.annotate select OVERRIDES` in this process (no second torch start-up); its stderr."""
    from hydra import compose, initialize_config_dir

    from train.annotate import select

    with initialize_config_dir(config_dir=str(PROJECT / "configs"), version_base="1.3"):
        select(compose("annotate", overrides=["command=select", "progress=false", *map(str, overrides)]))
    return capsys.readouterr().err


def corpus_overrides(files):
    return [f"data.files.{s}={p}" for s, p in files.items()] + [f"data.files.seeds={files['test']}"]


def test_uncertainty_peaks_at_the_threshold_and_at_a_stance_tie():
    probs = np.array([[0.30, 0.0, 0.0, 0.0, 0.34, 0.33, 0.33],   # topic on its threshold, stance a three-way tie
                      [0.95, 0.0, 1.0, 0.0, 1.00, 0.00, 0.00],   # sure of everything
                      [0.65, 0.0, 0.0, 0.0, 0.50, 0.50, 0.00]])  # topic halfway from threshold to 1
    u = task_uncertainty(SCHEMA, probs, {"topics": {"summitry": 0.3}})
    np.testing.assert_allclose(u["topics"], [1.0, 1 - 0.65 / 0.7, 0.5])
    np.testing.assert_allclose(u["stance"], [0.99, 0.0, 1.0])
    np.testing.assert_allclose(priority(u), [1.0, 0.0, 1.0])  # ranks: each task's least sure comes first


def test_choice_spreads_over_clusters_and_passes_over_near_duplicates():
    rng = np.random.default_rng(0)
    texts = [f"Paragraph {i} about harbour cranes, rice prices and the {w} weather report number {i * 31}."
             for i, w in enumerate(rng.permutation(["cold", "wet", "dry", "mild", "hot", "grey"] * 4))]
    texts[1] = texts[0].replace("report", "reports")  # a near-duplicate of the least certain paragraph
    vectors = np.array([[1.0, 0.0] if i < 12 else [0.0, 1.0] for i in range(24)]) + rng.normal(0, 0.01, (24, 2))
    uncertainty = {"topics": np.linspace(1, 0, 24), "stance": np.linspace(1, 0, 24)}  # the first cluster is least sure
    chosen = choose(texts, uncertainty, lambda batch: vectors[[texts.index(t) for t in batch]], n=2,
                    candidates_per_pick=12)
    assert chosen == [0, 12]  # one per cluster, not the two least certain (0 and its near-duplicate 1)
    chosen = choose(texts, uncertainty, lambda batch: vectors[[texts.index(t) for t in batch]], n=4,
                    candidates_per_pick=1)
    assert chosen == [0, 2, 3, 4]  # 1 repeats 0, so the next by priority fills in


def test_select_writes_label_studio_tasks_and_config_and_leaves_out_repeats(model, tmp_path, capsys):
    train_text = json.loads(model["files"]["train"].read_text().splitlines()[0])["text"]
    pool = [{"id": f"p{i}", "text": f"{r['text']} from the wire at {i:02d}:{i * 7 % 60:02d} hours local time",
             "lang": "ko", "url": f"https://example.org/{i}"} for i, r in enumerate(make_records(30, 9, "p"))]
    pool += [{"id": "copy", "text": train_text, "lang": "en"},          # in the corpus
             {"id": "again", "text": pool[3]["text"].upper(), "lang": "ko"},  # repeats p3
             {"id": "short", "text": "Read more", "lang": "en"}]
    out = tmp_path / "batch/to_label.json"
    err = select_here(capsys, f"input={write_jsonl(tmp_path / 'pool.jsonl', pool)}", "n=6", f"output={out}",
                      f"model_dir={model['dir']}", "min_chars=20", *corpus_overrides(model["files"]))
    assert "6 of 30 paragraphs chosen (1 repeated, 1 under 20 characters, 1 in the corpus)" in err
    tasks = json.loads(out.read_text())
    assert len(tasks) == 6 and len({t["data"]["paragraph_id"] for t in tasks}) == 6
    for t in tasks:
        data, prediction = t["data"], t["predictions"][0]
        assert data["paragraph_id"].startswith("p") and data["lang"] == "ko" and data["url"].startswith("https://")
        assert prediction["model_version"] == "tiny-run" and prediction["score"] == pytest.approx(1 - data["uncertainty"])
        assert {r["from_name"] for r in prediction["result"]} <= {"topics", "stance"}
        stance = next(r for r in prediction["result"] if r["from_name"] == "stance")
        assert stance["value"]["choices"] == [data["model_stance"]]

    view = ET.fromstring((tmp_path / "batch/to_label.label_config.xml").read_text())
    controls = {c.get("name"): c for c in view.iter("Choices")}
    assert controls["topics"].get("choice") == "multiple" and controls["stance"].get("choice") == "single-radio"
    assert [c.get("value") for c in controls["stance"]] == ["positive", "negative", "neutral"]
    assert view.find("Text").get("value") == "$text"


def test_a_filled_in_csv_comes_back_as_corpus_records(model, tmp_path, capsys):
    pool = [{"text": f"{r['text']} said the bulletin of {i + 3} March"} for i, r in enumerate(make_records(12, 4, "c"))]
    out = tmp_path / "to_label.csv"
    select_here(capsys, f"input={write_jsonl(tmp_path / 'pool.jsonl', pool)}", "n=4", f"output={out}",
                f"model_dir={model['dir']}", "min_chars=5", "lang=es", *corpus_overrides(model["files"]))
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == 4 and all(r["topics"] == "" and r["stance"] == "" for r in rows)
    for row, (topics, stance) in zip(rows, [("", "neutral"), ("summitry;sanctions", "negative"),
                                            ('["inter_korean"]', "positive"), ("", "")]):
        row["topics"], row["stance"] = topics, stance
    with (tmp_path / "filled.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    mine = tmp_path / "mine.jsonl"
    result = annotate("import", f"input={tmp_path / 'filled.csv'}", f"output={mine}")
    assert result.returncode == 2 and "filled.csv: record 4 (line 5): annotations: the task has no label" in result.stderr
    result = annotate("import", f"input={tmp_path / 'filled.csv'}", f"output={mine}", "on_unlabelled=skip")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in mine.read_text().splitlines()]
    assert [(r["topics"], r["stance"]) for r in records] == [([], "neutral"), (["summitry", "sanctions"], "negative"),
                                                             (["inter_korean"], "positive")]
    assert all(r["lang"] == "es" and r["id"] == r["doc_id"] and r["id"].startswith("pool-") for r in records)
    assert records[0]["provenance"] == {"tool": "csv", "export": "filled.csv"}
    assert "uncertainty" not in records[0] and "meta" not in records[0]  # select's own fields are dropped


def export_task(task_id, text, annotations, **data):
    return {"id": task_id, "data": {"text": text, **data}, "annotations": annotations}


def annotation(annotation_id, topics, stance, **extra):
    result = [{"from_name": "topics", "to_name": "text", "type": "choices", "value": {"choices": topics}}]
    result += [{"from_name": "stance", "to_name": "text", "type": "choices", "value": {"choices": stance}}]
    return {"id": annotation_id, "completed_by": 3, "result": result, "was_cancelled": False,
            "updated_at": f"2026-12-0{annotation_id}T10:00:00Z", **extra}


def test_import_names_every_problem_and_writes_nothing(tmp_path):
    tasks = [export_task(11, "Seoul and Pyongyang reopened the liaison office.", [annotation(1, ["inter_korean"], ["positive"])],
                         lang="en", paragraph_id="a-1", source="my paper", url="https://example.org/a"),
             export_task(12, "Sin idioma.", [annotation(2, [], ["neutral"])]),
             export_task(13, "Two readers disagree.", [annotation(3, ["summitry"], ["neutral"]),
                                                       annotation(4, [], ["neutral"])], lang="en"),
             export_task(14, "Two stances.", [annotation(5, [], ["neutral", "negative"])], lang="en"),
             export_task(15, "A made-up topic.", [annotation(6, ["nukes"], ["neutral"])], lang="en"),
             export_task(16, "Skipped.", [{"id": 7, "result": [], "was_cancelled": True}], lang="en"),
             export_task(17, "Nobody came.", [], lang="en")]
    export = tmp_path / "project-1-export.json"
    export.write_text(json.dumps(tasks))
    out = tmp_path / "mine.jsonl"
    result = annotate("import", f"input={export}", f"output={out}")
    assert result.returncode == 2 and not out.exists()
    expected = [f"{export}: record 2 (task id 12): lang: missing",
                f"{export}: record 3 (task id 13): annotations: 2 annotations disagree",
                f"{export}: record 4 (task id 14): stance: 2 labels ['neutral', 'negative'] chosen for a single-label task",
                f"{export}: record 5 (task id 15): topics: unknown label(s) ['nukes']",
                f"{export}: record 6 (task id 16): annotations: the task was skipped",
                f"{export}: record 7 (task id 17): annotations: the task has no label"]
    for line in expected:
        assert line in result.stderr, (line, result.stderr)
    assert "import stopped: 6 problem(s); nothing written" in result.stderr

    records, problems, skipped = read_export(export, SCHEMA, lang="es", on_unlabelled="skip", on_conflict="latest")
    assert skipped == 2 and [p.split(": ")[1] for p in problems] == ["record 4 (task id 14)", "record 5 (task id 15)"]
    first, no_lang, latest = records
    assert first == {"id": "a-1", "text": "Seoul and Pyongyang reopened the liaison office.", "lang": "en",
                     "topics": ["inter_korean"], "stance": "positive", "source": "my paper", "doc_id": "a-1",
                     "provenance": {"tool": "label-studio", "export": export.name, "task_id": 11, "annotation_id": 1,
                                    "annotator": 3, "annotated_at": "2026-12-01T10:00:00Z"},
                     "meta": {"url": "https://example.org/a"}}
    assert no_lang["lang"] == "es" and no_lang["id"] == "project-1-export-task12"
    assert no_lang["source"] == f"label-studio: {export.name}"
    assert latest["topics"] == [] and latest["provenance"]["annotation_id"] == 4  # the later of the two


def test_commands_and_options_are_checked(tmp_path):
    result = annotate("input=x", "output=y")
    assert result.returncode == 2 and "python -m train.annotate {select|import}" in result.stderr
    result = annotate("import", f"input={tmp_path / 'nope.json'}", f"output={tmp_path / 'out.jsonl'}")
    assert result.returncode == 2 and f"{tmp_path / 'nope.json'}: file: not found" in result.stderr
    (tmp_path / "list.json").write_text('{"not": "a list"}')
    result = annotate("import", f"input={tmp_path / 'list.json'}", f"output={tmp_path / 'out.jsonl'}")
    assert result.returncode == 2 and "expected a JSON list of tasks" in result.stderr
    result = annotate("select", f"input={tmp_path}", "n=0", f"output={tmp_path / 'o.json'}")
    assert result.returncode == 2 and "n=0: choose at least one paragraph" in result.stderr
