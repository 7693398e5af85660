"""Inter-annotator agreement: draw the blind second-pass sample, then compare the two passes.

    python data/tools/agreement.py sample data/corpus OUT.jsonl     # 10% (>= 300), seeded, no labels
    python data/tools/agreement.py report FIRST.jsonl SECOND.jsonl... # Cohen's kappa per topic + stance

FIRST holds the first-pass labels (the corpus records as annotated, before adjudication); SECOND the
blind second pass. Both are JSONL with `id`, `topics`, `stance`.
"""

import json
import random
import sys
from pathlib import Path

TOPICS = ["summitry", "sanctions", "russia_ties", "inter_korean"]
STANCES = ["positive", "negative", "neutral"]


def read(paths):
    out = {}
    for p in paths:
        for line in Path(p).open(encoding="utf-8"):
            if line.strip():
                r = json.loads(line)
                out[r["id"]] = r
    return out


def sample(corpus_dir, out_path, share=0.10, minimum=300, seed=7):
    records = list(read(sorted(Path(corpus_dir).glob("*.jsonl"))).values())
    n = max(minimum, round(share * len(records)))
    chosen = random.Random(seed).sample(records, n)
    with open(out_path, "w", encoding="utf-8") as f:
        for r in chosen:
            f.write(json.dumps({k: r[k] for k in ("id", "text", "lang")}, ensure_ascii=False) + "\n")
    print(f"{n} of {len(records)} records -> {out_path}")


def report(first_path, second_paths):
    from sklearn.metrics import cohen_kappa_score, f1_score

    first, second = read([first_path]), read(second_paths)
    ids = sorted(set(first) & set(second))
    rows = []
    for t in TOPICS:
        a = [int(t in first[i]["topics"]) for i in ids]
        b = [int(t in second[i]["topics"]) for i in ids]
        rows.append((t, cohen_kappa_score(a, b), f1_score(a, b), sum(x != y for x, y in zip(a, b))))
    a, b = [first[i]["stance"] for i in ids], [second[i]["stance"] for i in ids]
    rows.append(("stance", cohen_kappa_score(a, b), f1_score(a, b, average="macro", labels=STANCES),
                 sum(x != y for x, y in zip(a, b))))
    print(f"{len(ids)} paragraphs labelled twice")
    print(f"| label | Cohen's kappa | F1 of pass 2 vs pass 1 | disagreements |\n|---|---|---|---|")
    for name, kappa, f1, d in rows:
        print(f"| {name} | {kappa:.3f} | {f1:.3f} | {d} |")
    exact = sum(set(first[i]["topics"]) == set(second[i]["topics"]) and first[i]["stance"] == second[i]["stance"]
                for i in ids)
    print(f"identical topics and stance: {exact} of {len(ids)}")
    return [i for i in ids if set(first[i]["topics"]) != set(second[i]["topics"])
            or first[i]["stance"] != second[i]["stance"]]


if __name__ == "__main__":
    if sys.argv[1] == "sample":
        sample(sys.argv[2], sys.argv[3])
    else:
        report(sys.argv[2], sys.argv[3:])
