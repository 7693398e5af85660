"""Label Studio interchange: the labelling config, tasks with the model's pre-annotations, and
exports (JSON, or CSV) read back as corpus records with their provenance.

    labelling_config(schema)                            # <View> with one <Choices> per task
    task(data, labels, model_version, score, schema)    # one import task with a prediction
    records, problems, skipped = read_export(Path("export.json"), schema, lang="en")

Every problem is `file: record N (task id X): field: message`; a record with a problem is not
returned. A task nobody labelled, or that was skipped ("cancelled" in Label Studio's terms), is a
problem unless `on_unlabelled="skip"`; several annotations of one task must agree unless
`on_conflict="latest"`.
"""

import csv
import json
from pathlib import Path
from xml.sax.saxutils import quoteattr

from train.data import check_record
from train.labels import MULTI, LabelSchema

TEXT_FIELD = "text"  # the task data field the labelling config shows (`$text`)
ID_FIELD = "paragraph_id"  # our id in task data: `id` would be taken for Label Studio's task id in its CSV
# Columns Label Studio's CSV export adds beside the task data and the choices.
CSV_EXPORT_COLUMNS = {"id", "annotation_id", "annotator", "created_at", "updated_at", "lead_time"}


def labelling_config(schema: LabelSchema) -> str:
    """The Label Studio labelling config: the text, and per task a <Choices> named like the task
    with its labels (multi-label: any number, none allowed; single-label: exactly one, required)."""
    lines = ["<View>",
             '  <Header value="Label the paragraph by the annotation guide (data/ANNOTATION.md)."/>',
             f'  <Text name="{TEXT_FIELD}" value="${TEXT_FIELD}"/>']
    for t in schema.tasks:
        many = t.kind == MULTI
        lines.append(f"  <Header value={quoteattr(t.name + (': any that apply, or none' if many else ': one'))}/>")
        kind = 'choice="multiple"' if many else 'choice="single-radio" required="true"'
        lines.append(f'  <Choices name={quoteattr(t.name)} toName="{TEXT_FIELD}" {kind} showInline="true">')
        lines += [f"    <Choice value={quoteattr(label)}/>" for label in t.labels]
        lines.append("  </Choices>")
    return "\n".join(lines + ["</View>"]) + "\n"


def task(data: dict, labels: dict, model_version: str, score: float, schema: LabelSchema) -> dict:
    """An import task: `data` (with `text`) and the model's labels as a pre-annotation."""
    result = [{"from_name": t.name, "to_name": TEXT_FIELD, "type": "choices",
               "value": {"choices": labels[t.name] if t.kind == MULTI else [labels[t.name]]}}
              for t in schema.tasks if labels[t.name]]  # no topic: no result (an empty choice is no choice)
    return {"data": data, "predictions": [{"model_version": model_version, "score": round(float(score), 4),
                                           "result": result}]}


def selection_fields(schema: LabelSchema) -> list[str]:
    """Task data fields `select` adds for the annotator: the model's uncertainty (overall and per
    task) and its labels (also given as the pre-annotation). `import` drops them again."""
    return ["uncertainty", *(f"uncertainty_{t.name}" for t in schema.tasks), *(f"model_{t.name}" for t in schema.tasks)]


def read_export(path: Path, schema: LabelSchema, lang: str | None = None, source: str | None = None,
                on_unlabelled: str = "fail", on_conflict: str = "fail") -> tuple[list[dict], list[str], int]:
    """(corpus records, problems, number of unlabelled tasks skipped) of a Label Studio JSON export
    (a list of tasks) or a CSV file: Label Studio's CSV export, or the CSV `select` writes, filled in."""
    path = Path(path)
    if not path.is_file():
        return [], [f"{path}: file: not found"], 0
    try:
        items = list(_csv_items(path, schema) if path.suffix.lower() == ".csv" else _json_items(path))
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error, ValueError) as e:
        return [], [f"{path}: file: not a Label Studio export ({type(e).__name__}: {e})"], 0
    records, problems, skipped, seen = [], [], 0, {}
    source = source or f"label-studio: {path.name}"
    for number, (at, task_id, data, annotations) in enumerate(items, 1):
        where = f"{path}: record {number} ({at})"
        if not isinstance(data, dict):
            problems.append(f"{where}: data: expected an object with the task's fields")
            continue
        done = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]
        if not done:
            state = "was skipped" if annotations else "has no label"
            if on_unlabelled == "skip":
                skipped += 1
            else:
                problems.append(f"{where}: annotations: the task {state}; label it, or import with on_unlabelled=skip")
            continue
        labels = [(a, choices(a.get("result") or [], schema)) for a in done]
        if len({json.dumps(chosen, sort_keys=True) for _, chosen in labels}) > 1:
            if on_conflict != "latest":
                found = "; ".join(f"annotation {a.get('id')}: {chosen}" for a, chosen in labels)
                problems.append(f"{where}: annotations: {len(labels)} annotations disagree ({found}); keep one in "
                                f"Label Studio, or import with on_conflict=latest")
                continue
            labels.sort(key=lambda pair: str(pair[0].get("updated_at") or pair[0].get("created_at") or ""))
        annotation, chosen = labels[-1]
        record, found = corpus_record(data, chosen, annotation, task_id, number, path, schema, lang, source)
        named = {p.split(":")[0] for p in found}  # fields corpus_record has explained already
        found += [p for p in check_record(record, schema, labelled=True) if p.split(":")[0] not in named]
        if record.get("id") in seen:
            found.append(f"id: duplicate id {record['id']!r} (first in record {seen[record['id']]})")
        seen.setdefault(record.get("id"), number)
        problems += [f"{where}: {p}" for p in found]
        if not found:
            records.append(record)
    return records, problems, skipped


def choices(result: list, schema: LabelSchema) -> dict:
    """{task: [chosen labels]} from an annotation's result; controls of other names are ignored."""
    names = {t.name for t in schema.tasks}
    out = {}
    for region in result:
        if isinstance(region, dict) and region.get("from_name") in names:
            out.setdefault(region["from_name"], []).extend((region.get("value") or {}).get("choices") or [])
    return out


def corpus_record(data, chosen, annotation, task_id, number, path, schema, lang, source) -> tuple[dict, list[str]]:
    """A corpus record (id, text, lang, the tasks, source, doc_id, provenance, meta) and problems
    that check_record cannot see (a single-label task with several choices, no language)."""
    problems = []
    rid = data.get(ID_FIELD) or (f"{path.stem}-task{task_id}" if task_id is not None else f"{path.stem}-{number}")
    record = {"id": str(rid), "text": data.get(TEXT_FIELD), "lang": data.get("lang") or lang}
    if not record["lang"]:
        problems.append("lang: missing; the task data has no `lang`: give the language with lang=xx "
                        "(ISO 639-1, e.g. lang=en)")
    for t in schema.tasks:
        picked = chosen.get(t.name, [])
        if t.kind == MULTI:
            record[t.name] = picked
        elif len(picked) == 1:
            record[t.name] = picked[0]
        elif picked:
            problems.append(f"{t.name}: {len(picked)} labels {picked} chosen for a single-label task")
    record["source"] = str(data.get("source") or source)
    record["doc_id"] = str(data.get("doc_id") or data.get("file") or record["id"])
    annotator = annotation.get("completed_by")
    if isinstance(annotator, dict):  # some versions export the user, others the user id
        annotator = annotator.get("email") or annotator.get("id")
    record["provenance"] = {k: v for k, v in {
        "tool": annotation.get("tool", "label-studio"), "export": path.name, "task_id": task_id,
        "annotation_id": annotation.get("id"), "annotator": annotator,
        "annotated_at": annotation.get("updated_at") or annotation.get("created_at"),
        "lead_time_s": annotation.get("lead_time")}.items() if v not in (None, "")}
    skip = {ID_FIELD, TEXT_FIELD, "lang", "source", "doc_id", *selection_fields(schema)}  # select's, not data
    meta = {k: v for k, v in data.items() if k not in skip}
    if meta:
        record["meta"] = meta
    return record, problems


def _json_items(path: Path):
    """(where, task id, data, annotations) per task of a JSON export."""
    tasks = json.loads(path.read_text(encoding="utf-8-sig"))
    if not isinstance(tasks, list):
        raise ValueError("expected a JSON list of tasks (Export > JSON in Label Studio)")
    for t in tasks:
        if not isinstance(t, dict):
            yield "not a task", None, t, []
        else:
            yield f"task id {t.get('id')}", t.get("id"), t.get("data"), t.get("annotations") or []


def _csv_items(path: Path, schema: LabelSchema):
    """The same per CSV row. Label Studio writes a multi-label task as {"choices": [...]}; a CSV
    filled in by hand may hold a JSON list or labels separated by ';'. A row whose task columns are
    all empty is unlabelled."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            cells = {t.name: (row.get(t.name) or "").strip() for t in schema.tasks}
            data = {k: v for k, v in row.items() if k not in CSV_EXPORT_COLUMNS and k not in cells and v not in ("", None)}
            task_id = row.get("id") or None
            at = f"task id {task_id}" if task_id else f"line {reader.line_num}"
            if not any(cells.values()):
                yield at, task_id, data, []
                continue
            result = [{"from_name": name, "value": {"choices": csv_labels(cell)}} for name, cell in cells.items() if cell]
            annotation = {"id": row.get("annotation_id"), "completed_by": row.get("annotator"), "result": result,
                          "created_at": row.get("created_at"), "updated_at": row.get("updated_at"),
                          "lead_time": row.get("lead_time"), "tool": "label-studio" if "annotation_id" in row else "csv"}
            yield at, task_id, data, [annotation]


def csv_labels(cell: str) -> list[str]:
    if cell.startswith("{"):
        return list(json.loads(cell).get("choices", []))
    if cell.startswith("["):
        return list(json.loads(cell))
    return [label.strip() for label in cell.split(";") if label.strip()]
