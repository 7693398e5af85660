"""Article stance: the guide's rule against score-weighted and headline-weighted aggregation.

    python -m train.bench.aggregation                      # models/latest
    python -m train.bench.aggregation --model models/recipe/plain

The gold is a reading of each whole document (data/annotation/article_readings.jsonl: the five seed
articles and the cross-source documents with two or more paragraphs; the NTREX documents in all nine
languages), not the rule applied to gold paragraphs, which would favour the rule. Each method
aggregates (a) the model's paragraph predictions and (b) the gold paragraph labels. Cross-source
documents are read with their title as the headline paragraph (labelled by the model in both rows).
"""

import argparse
import json
from collections import defaultdict

from train.articles import STANCE_METHODS, aggregate, split_paragraphs
from train.data import PROJECT_ROOT

READINGS = PROJECT_ROOT / "data/annotation/article_readings.jsonl"
STANCES = ["positive", "negative", "neutral"]


def read_jsonl(path):
    return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]


def documents(readings: dict) -> list[dict]:
    """[{doc, lang, headline, texts, gold_paragraphs, reading}] for the seeds and cross_source."""
    out = []
    seed_gold = defaultdict(list)
    for r in read_jsonl(PROJECT_ROOT / "data/seeds/paragraphs.jsonl"):
        seed_gold[r["doc_id"]].append(r)
    for path in sorted((PROJECT_ROOT / "seeds").glob("*.txt")):
        if path.stem in readings:
            paragraphs = split_paragraphs(path.read_text(encoding="utf-8"))
            out.append({"doc": path.stem, "set": "seeds", "lang": seed_gold[path.stem][0]["lang"], "headline": None,
                        "texts": paragraphs, "gold_paragraphs": seed_gold[path.stem], "reading": readings[path.stem]})
    groups = defaultdict(list)
    for r in read_jsonl(PROJECT_ROOT / "data/corpus/cross_source.jsonl"):
        if r["doc_id"] in readings:
            groups[(r["doc_id"], r["lang"])].append(r)
    for (doc, lang), records in sorted(groups.items()):
        records.sort(key=lambda r: r["id"])
        out.append({"doc": doc, "set": "cross_source", "lang": lang, "headline": records[0].get("headline"),
                    "texts": [r["text"] for r in records], "gold_paragraphs": records, "reading": readings[doc]})
    return out


def main(argv=None):
    from sklearn.metrics import accuracy_score, f1_score

    from train.inference import Classifier

    parser = argparse.ArgumentParser(prog="python -m train.bench.aggregation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/latest", help="a model folder (default: models/latest)")
    args = parser.parse_args(argv)
    readings = {r["doc_id"]: r for r in read_jsonl(READINGS)}
    docs = documents(readings)
    clf = Classifier.from_pretrained(PROJECT_ROOT / args.model if not args.model.startswith("/") else args.model)
    rows = defaultdict(lambda: defaultdict(list))  # (labels, method) -> set -> [(gold, predicted)]
    for d in docs:
        texts = ([d["headline"]] if d["headline"] else []) + d["texts"]
        predicted = clf.predict(texts)
        for p, text in zip(predicted, texts):
            p["text"] = text
        gold = [{"text": g["text"], "topics": g["topics"], "stance": g["stance"]} for g in d["gold_paragraphs"]]
        if d["headline"]:
            gold = [predicted[0]] + gold
        for method in STANCE_METHODS:
            for labels, paragraphs in (("model's paragraphs", predicted), ("gold paragraphs", gold)):
                stance = aggregate(paragraphs, stance_method=method)["stance"]
                for key in (d["set"], "all"):
                    rows[(labels, method)][key].append((d["reading"]["stance"], stance))
    sets = ["seeds", "cross_source", "all"]
    counts = {s: len(rows[("model's paragraphs", "rule")][s]) for s in sets}
    print(f"\nArticle stance against a reading of each document ({args.model}); accuracy / macro-F1")
    print("| paragraph labels | method | " + " | ".join(f"{s} ({counts[s]})" for s in sets) + " |")
    print("|---|---|" + "---|" * len(sets))
    for (labels, method), per_set in rows.items():
        cells = []
        for s in sets:
            gold, pred = zip(*per_set[s])
            cells.append(f"{accuracy_score(gold, pred):.2f} / "
                         f"{f1_score(gold, pred, labels=STANCES, average='macro', zero_division=0):.2f}")
        print(f"| {labels} | {method} | " + " | ".join(cells) + " |")
    seeds = [(d["doc"], d["reading"]["stance"]) for d in docs if d["set"] == "seeds"]
    print("\nseed articles (reading): " + ", ".join(f"{doc[:3]} {stance}" for doc, stance in seeds))


if __name__ == "__main__":
    main()
