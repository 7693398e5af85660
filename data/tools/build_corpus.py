"""Assemble data/ from the annotation work: labelled candidates, reviewed pilot, written paragraphs,
seed articles. Whole sources in HELD_OUT go to corpus/cross_source.jsonl (never trained on); the rest
is split by document (near-duplicate documents are grouped first), stratified by language and label,
with a fixed seed, so the files in data/ are the fixed splits.

    python data/tools/build_corpus.py WORK_DIR [--shared ../shared]

WORK_DIR holds candidates/*.jsonl (text + attribution), labels/*.jsonl (id, topics, stance) and
written/*.jsonl (full records). Run once; the data/ files it writes are what the project ships.
"""

import argparse
import json
import random
import re
from collections import Counter, defaultdict
from pathlib import Path

FIELDS = ("id", "text", "lang", "topics", "stance", "source", "doc_id")
HEADLINE = "headline"  # optional field: the headline of the paragraph's article, where the source has one
SPLIT_SHARES = (("test", 0.12), ("validation", 0.12), ("train", 0.76))
SEED = 20261123
# Label files that override the first pass: reporters' questions re-read under the headline rule, then
# the adjudications of the two blind second passes (corpus 2026-11, real-news layer 2026-12).
OVERRIDES = ("news_question_reread", "adjudication", "news_adjudication", "written_hard_adjudication")
# Whole sources the model never trains on: one government source, one press source (two of the six
# newspapers whose tweets are in the corpus) and NTREX-128's mainstream news in nine languages.
HELD_OUT = {
    "Kremlin (en.kremlin.ru)": lambda r: r["doc_id"].startswith("kremlin-en-"),
    "NTREX-128 news": lambda r: r["doc_id"].startswith("ntrex128:"),
    "tweets of Hankyoreh and Chosun Ilbo": lambda r: r["source"].startswith(("tweet: hanitweet ", "tweet: chosun ")),
}


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def norm(text):
    return re.sub(r"\W+", " ", text.lower()).strip()


def gather(work: Path, shared: Path):
    records, seen_text = [], set()

    def add(r):
        key = norm(r["text"])
        if key in seen_text or not key:
            return False
        seen_text.add(key)
        records.append({k: r[k] for k in FIELDS if k in r})
        return True

    # Re-readings and adjudicated second-pass disagreements override the first pass wherever they
    # fall, in this order (a later file wins).
    adjudicated = {}
    for name in OVERRIDES:
        if (work / f"labels/{name}.jsonl").exists():
            adjudicated.update({r["id"]: r for r in read_jsonl(work / f"labels/{name}.jsonl")})

    # Reviewed pilot first: its labels are the settled ones where a candidate repeats a pilot text.
    review = {r["id"]: r for r in read_jsonl(work / "labels/pilot_review.jsonl")}
    for f in sorted((shared / "pilot").glob("*.jsonl")):
        for r in read_jsonl(f):
            settled = adjudicated.get(r["id"], review[r["id"]])
            add(dict(r, topics=settled["topics"], stance=settled["stance"]))

    labels = {}
    for f in sorted((work / "labels").glob("*.jsonl")):
        if f.stem not in ("pilot_review", "seeds", "seed_articles", "second_pass", *OVERRIDES):
            labels.update({r["id"]: r for r in read_jsonl(f)})
    labels.update(ntrex_translation_labels(work / "candidates/news_ntrex.jsonl", labels))
    unlabelled = 0
    for f in sorted((work / "candidates").glob("*.jsonl")):
        for r in read_jsonl(f):
            if r["id"] not in labels:
                unlabelled += 1
                continue
            gold = adjudicated.get(r["id"], labels[r["id"]])
            add(dict(r, topics=gold["topics"], stance=gold["stance"]))
    for f in sorted((work / "written").glob("*.jsonl")):
        for r in read_jsonl(f):
            gold = adjudicated.get(r["id"], r)
            add(dict(r, topics=gold["topics"], stance=gold["stance"], source="written"))
    print(f"{len(records)} records ({unlabelled} candidates not labelled, left out)")
    return records


def ntrex_translation_labels(path: Path, labels: dict) -> dict:
    """NTREX-128 holds one English news text and its professional translations, aligned by source
    lines. The guide labels a translation exactly as its English original, so the English window's
    labels (read by an annotator) are given to the aligned windows in the other eight languages."""
    if not path.exists():
        return {}
    rows = read_jsonl(path)
    key = lambda r: (r["doc_id"], re.search(r"lines (\d+-\d+)", r["source"]).group(1))
    english = {key(r): labels[r["id"]] for r in rows if r["lang"] == "en" and r["id"] in labels}
    return {r["id"]: english[key(r)] for r in rows if r["lang"] != "en" and key(r) in english}


def attach_headlines(records, work: Path, shared: Path):
    """Give each paragraph the headline of its article where the source has one (context for the
    headline-as-context recipe; labels never depend on it): titles quoted in `source` (government
    sources, ROK speeches), KCNA titles from the raw dumps, the headline paragraph of written and seed
    articles. A headline paragraph gets none (it is its own context)."""
    titles = {}
    for f in sorted((work / "written").glob("*.jsonl")):
        for r in read_jsonl(f):
            if r.get("register") == "headline":
                titles.setdefault(r["doc_id"], r["text"])
    raw = shared / "raw"
    stories = json.loads((raw / "kcna_2024_en/headlines_2024-11-11.json").read_text(encoding="utf-8"))
    for line in (raw / "kcna_2011_2012/kcna_en_relevant.jsonl").open(encoding="utf-8"):
        s = json.loads(line)
        titles[f"kcna-en-{s['date']}-{slug(s['title'])}"] = s["title"]
    for r in records:
        doc, quoted = r["doc_id"], re.search(r'"(.+)"', r["source"])
        if doc in titles:
            headline = titles[doc]
        elif quoted and not r["source"].startswith("NTREX"):
            headline = quoted.group(1)
        elif re.match(r"kcna2024-(\d{4})-", doc):
            headline = stories[int(doc[9:13])]["headline"]
        elif r["source"].startswith("KCNA es "):
            headline = doc[11:]  # "<date> <title>"
        else:
            continue
        if norm(headline) != norm(r["text"]):
            r[HEADLINE] = headline.strip()
    return records


def slug(s):  # as data/tools/select_candidates.py built KCNA doc ids
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")[:60]


def seed_headlines(seeds):
    first = {}
    for p in seeds:
        first.setdefault(p["doc_id"], p["text"])
    return [{**{k: p[k] for k in FIELDS}, **({HEADLINE: first[p["doc_id"]]} if p["text"] != first[p["doc_id"]] else {})}
            for p in seeds]


def drop_seed_lookalikes(records, seeds):
    """The seed articles are evaluation data: drop any corpus text that is a near-duplicate of a
    seed paragraph (in practice generic page furniture such as "Listen to this article")."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5)).fit([norm(r["text"]) for r in records + seeds])
    sims = vec.transform([norm(r["text"]) for r in records]) @ vec.transform([norm(s["text"]) for s in seeds]).T
    close = set(sims.tocoo().row[sims.tocoo().data >= 0.85])
    for i in sorted(close):
        print(f"dropped (near-duplicate of a seed paragraph): {records[i]['id']}: {records[i]['text'][:60]!r}")
    return [r for i, r in enumerate(records) if i not in close]


def document_groups(records):
    """Documents joined when any of their texts are near-duplicates (char n-gram cosine >= 0.8),
    so that no near-duplicate can straddle two splits."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    parent = {}

    def find(d):
        while parent.setdefault(d, d) != d:
            parent[d] = parent[parent[d]]
            d = parent[d]
        return d

    matrix = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5)).fit_transform([norm(r["text"]) for r in records])
    sims = (matrix @ matrix.T).tocoo()
    joined = 0
    for i, j, v in zip(sims.row, sims.col, sims.data):
        if i < j and v >= 0.8:
            a, b = find(records[i]["doc_id"]), find(records[j]["doc_id"])
            if a != b:
                parent[a] = b
                joined += 1
    print(f"{joined} document pairs joined as near-duplicates")
    groups = defaultdict(list)
    for r in records:
        groups[find(r["doc_id"])].append(r)
    return list(groups.values())


def assign_splits(groups):
    """Stratify groups by (language, main label), shuffle within a stratum, and deal them out so
    that each stratum's paragraphs fill test / validation / train near their target shares."""
    rng = random.Random(SEED)
    strata = defaultdict(list)
    for g in groups:
        lang = Counter(r["lang"] for r in g).most_common(1)[0][0]
        topic = Counter(t for r in g for t in r["topics"]).most_common(1)
        stance = Counter(r["stance"] for r in g).most_common(1)[0][0]
        strata[(lang, topic[0][0] if topic else "none", stance)].append(g)
    split_of = {}
    for key in sorted(strata):
        members = strata[key]
        rng.shuffle(members)
        filled = Counter()
        total = sum(len(g) for g in members)
        for g in members:
            # the split furthest below its share of this stratum takes the next group
            name = min(SPLIT_SHARES, key=lambda s: filled[s[0]] / total - s[1])[0]
            filled[name] += len(g)
            for r in g:
                split_of[r["id"]] = name
    return split_of


def shipped_splits(corpus: Path) -> dict:
    """id -> split of the corpus files as shipped (empty when there are none yet)."""
    out = {}
    for path in sorted(corpus.glob("*.jsonl")):
        out.update({r["id"]: path.stem for r in read_jsonl(path)})
    return out


def write_jsonl(path: Path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work", type=Path)
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--out", type=Path, default=Path("data"))
    args = parser.parse_args()

    records = gather(args.work, args.shared)
    seeds = read_jsonl(args.work / "labels/seeds.jsonl")
    records = attach_headlines(drop_seed_lookalikes(records, seeds), args.work, args.shared)
    groups = document_groups(records)
    held_out = [any(rule(r) for r in g for rule in HELD_OUT.values()) for g in groups]
    # The splits are fixed: a document already in the shipped corpus keeps its split; only new
    # documents are dealt out (so adding data never moves a test paragraph into training).
    shipped = shipped_splits(args.out / "corpus")
    kept = {i: next((shipped[r["id"]] for r in g if r["id"] in shipped), None) for i, g in enumerate(groups)}
    split_of = assign_splits([g for i, (g, out) in enumerate(zip(groups, held_out)) if not out and kept[i] is None])
    split_of.update({r["id"]: kept[i] for i, g in enumerate(groups) if kept[i] and not held_out[i] for r in g})
    print(f"{sum(1 for i in kept if kept[i])} document groups keep their shipped split")
    # a document joined to a held-out one as a near-duplicate goes with it: nothing of it is trained on
    pulled = [r["id"] for g, out in zip(groups, held_out) if out for r in g
              if not any(rule(r) for rule in HELD_OUT.values())]
    print(f"{len(pulled)} paragraphs of other sources go to cross_source as near-duplicates: {pulled}")
    split_of.update({r["id"]: "cross_source" for g, out in zip(groups, held_out) if out for r in g})
    for name in ["cross_source"] + [name for name, _ in SPLIT_SHARES]:
        rows = sorted((r for r in records if split_of[r["id"]] == name), key=lambda r: r["id"])
        write_jsonl(args.out / "corpus" / f"{name}.jsonl", rows)
        print(name, len(rows), dict(Counter(r["lang"] for r in rows)))

    write_jsonl(args.out / "seeds/paragraphs.jsonl", seed_headlines(seeds))
    write_jsonl(args.out / "seeds/articles.jsonl", seed_articles(seeds))


def seed_articles(paragraphs):
    """Article labels of the seed articles: the guide's rule applied to the gold paragraph labels."""
    from train.articles import aggregate

    by_doc = defaultdict(list)
    for p in paragraphs:
        by_doc[p["doc_id"]].append(p)
    rows = []
    for doc, ps in sorted(by_doc.items()):
        gold = aggregate(ps)
        chars = Counter()
        for p in ps:
            chars[p["lang"]] += len(p["text"])
        lang = chars.most_common(1)[0][0]  # the language of most of the text, not of the page furniture
        rows.append({"doc_id": doc, "lang": lang, "topics": gold["topics"], "stance": gold["stance"],
                     "paragraphs": len(ps), "headline": ps[0]["text"]})
    return rows


if __name__ == "__main__":
    main()
