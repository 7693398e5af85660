"""Select candidate paragraphs from ../shared/raw for annotation (deterministic, seeded).

Keyword cues only decide which paragraphs are *offered* to annotators (to raise the share of
on-topic text and to keep some off-topic hard negatives); they never decide a label.
Every candidate is copied verbatim from its source paragraph and carries its attribution.

    python data/tools/select_candidates.py ../shared/raw OUT_DIR
"""

import csv
import datetime
import hashlib
import json
import random
import re
import sys
from pathlib import Path

CUES = {
    "en": r"south korea|puppet|north-south|inter-korean|reunification|summit|talks|sanction|russia|putin|moscow|lavrov|shoigu|dialogue|negotiat|visit|treaty|security council",
    "es": r"surcorean|titere|norte y sur|norte-sur|reunificacion|cumbre|conversacion|sancion|rusia|putin|medvedev|moscu|dialogo|negociacion|visita|consejo de seguridad|acuerdo",
    "ko": r"북한|북핵|김정은|남북|통일|대화|정상회담|회담|제재|러시아|푸틴|중국|미사일|도발|사드|트럼프|문재인|대북|평양|남조선|북남|쏘련|로씨야|조국통일|협상|ICBM|안보리",
}


# The 2011-2012 KCNA dumps separate paragraphs by blank lines or by ", , ".
PARA_KCNA_2011 = r"\s*,\s*,\s*|\n\s*\n"


def para_ok(text, lo=40, hi=1200):
    return lo <= len(text.strip()) <= hi


def pick(rows, n_cue, n_plain, lang, seed):
    """rows: list of dicts with text; choose n_cue cue-matching and n_plain others."""
    rng = random.Random(seed)
    cue = re.compile(CUES[lang], re.I)
    hit = [r for r in rows if cue.search(r["text"])]
    miss = [r for r in rows if not cue.search(r["text"])]
    rng.shuffle(hit)
    rng.shuffle(miss)
    return hit[:n_cue] + miss[:n_plain]


def limit_per_doc(rows, k, seed):
    rng = random.Random(seed)
    rows = rows[:]
    rng.shuffle(rows)
    seen, out = {}, []
    for r in rows:
        if seen.get(r["doc_id"], 0) < k:
            seen[r["doc_id"]] = seen.get(r["doc_id"], 0) + 1
            out.append(r)
    return out


def slug(s):
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")[:60]


def main(raw, out, pilot):
    raw, out = Path(raw), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    taken = set()
    for f in Path(pilot).glob("*.jsonl"):
        taken |= {json.loads(l)["text"].strip() for l in f.open()}

    def fresh(rows):
        seen, keep = set(), []
        for r in rows:
            t = r["text"].strip()
            if t not in taken and t not in seen and para_ok(t):
                seen.add(t)
                r["text"] = t
                keep.append(r)
        return keep

    # KCNA 2024 (English): stories have many exact duplicates; paragraphs are single lines.
    stories = json.load((raw / "kcna_2024_en/headlines_2024-11-11.json").open())
    rows, seen_story = [], set()
    for i, s in enumerate(stories):
        body = s.get("story_text") or ""
        if not body or body in seen_story:
            continue
        seen_story.add(body)
        date = datetime.datetime.utcfromtimestamp(s["date"] / 1000).date().isoformat()
        doc = f"kcna2024-{i:04d}-{slug(s['headline'])}"
        rows.append({"text": s["headline"], "source": f"KCNA 2024 {date}", "doc_id": doc})
        for p in body.split("\n"):
            rows.append({"text": p, "source": f"KCNA 2024 {date}", "doc_id": doc})
    sel = pick(limit_per_doc(fresh(rows), 3, 1), 240, 60, "en", 1)
    write(out / "kcna_en_2024.jsonl", sel, "en", "cand-kcna24")
    pools = {"en": fresh(rows)}

    # KCNA 2011-2012 English.
    rows = []
    for line in (raw / "kcna_2011_2012/kcna_en_relevant.jsonl").open():
        s = json.loads(line)
        doc = f"kcna-en-{s['date']}-{slug(s['title'])}"
        src = f"KCNA en {s['date']}"
        rows.append({"text": s["title"], "source": src, "doc_id": doc})
        for p in re.split(PARA_KCNA_2011, s["story"]):
            rows.append({"text": p, "source": src, "doc_id": doc})
    sel = pick(limit_per_doc(fresh(rows), 2, 2), 210, 40, "en", 2)
    write(out / "kcna_en_2011.jsonl", sel, "en", "cand-kcna11")
    pools["en"] += fresh(rows)

    # KCNA 2011-2012 Spanish: paragraphs are often separated by ", , ".
    rows = []
    for line in (raw / "kcna_2011_2012/kcna_es.jsonl").open():
        s = json.loads(line)
        doc = f"{s['date']} {s['title']}"
        src = f"KCNA es {s['date']}"
        rows.append({"text": s["title"], "source": src, "doc_id": doc})
        for p in re.split(PARA_KCNA_2011, s["story"]):
            rows.append({"text": p, "source": src, "doc_id": doc})
    sel = pick(limit_per_doc(fresh(rows), 3, 3), 300, 60, "es", 3)
    write(out / "kcna_es.jsonl", sel, "es", "cand-kcnaes")
    pools["es"] = fresh(rows)

    # South Korean newspapers' tweets 2017: one tweet = one paragraph = one document.
    rows = []
    with (raw / "kr_newspapers_twitter_2017/korean_newspapers_twitter.csv").open() as f:
        for r in csv.DictReader(f):
            rows.append({"text": r["text"], "source": f"tweet: {r['paper_name']} {r['created'][:10]}",
                         "doc_id": r["id"]})
    sel = pick(fresh(rows), 380, 90, "ko", 4)
    write(out / "ko_tweets.jsonl", sel, "ko", "cand-tweet")
    pools["ko"] = fresh(rows)

    # North Korean New Year addresses.
    rows = []
    for f in sorted((raw / "nk_newyear_speeches_ko/data").glob("*.txt")):
        for p in re.split(r"\n\s*\n", f.read_text(encoding="utf-8")):
            rows.append({"text": p, "source": f"speech: {f.stem}", "doc_id": f"speech-{f.stem}"})
    sel = pick(limit_per_doc(fresh(rows), 10, 5), 230, 40, "ko", 5)
    write(out / "ko_speeches.jsonl", sel, "ko", "cand-speech")

    # Sanctions are rare in the picks above: a second draw of not-yet-offered paragraphs that
    # mention them (the cue again only chooses what to offer; annotators decide the label).
    chosen = set()
    for f in out.glob("*.jsonl"):
        chosen |= {json.loads(l)["text"] for l in f.open()}
    cue = {"en": r"sanction", "es": r"sancion", "ko": r"제재"}
    sel = []
    for lang, n in (("en", 120), ("es", 90), ("ko", 60)):
        hits = [r for r in pools[lang] if re.search(cue[lang], r["text"], re.I) and r["text"] not in chosen]
        random.Random(7).shuffle(hits)
        sel += [dict(r, lang=lang) for r in limit_per_doc(hits, 2, 8)[:n]]
    write(out / "sanctions_supplement.jsonl", sel, None, "cand-sanc")

    # SIB-200 (FLORES-200) train sentences: off-topic real text in three languages, the same
    # sentence in each, kept together under one doc_id so translations never straddle splits.
    rng = random.Random(6)
    tsv = {l: list(csv.DictReader((raw / f"sib200/{d}/train.tsv").open(), delimiter="\t"))
           for l, d in [("en", "eng_Latn"), ("es", "spa_Latn"), ("ko", "kor_Hang")]}
    idx = rng.sample(range(len(tsv["en"])), 55)
    sel = [{"text": tsv[l][i]["text"], "source": "SIB-200 (FLORES-200) train", "doc_id": f"sib200-{tsv['en'][i]['index_id']}", "lang": l}
           for i in idx for l in tsv]
    write(out / "sib200.jsonl", sel, None, "cand-sib")


def write(path, rows, lang, prefix):
    with path.open("w", encoding="utf-8") as f:
        for i, r in enumerate(rows):
            r.setdefault("lang", lang)
            r["id"] = f"{prefix}-{i:04d}"
            f.write(json.dumps({k: r[k] for k in ("id", "text", "lang", "source", "doc_id")}, ensure_ascii=False) + "\n")
    print(path, len(rows))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "../shared/pilot")
