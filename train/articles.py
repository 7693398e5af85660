"""Articles: split into paragraphs, and aggregate paragraph labels into article labels.

Topics follow the annotation guide's rule (data/ANNOTATION.md, "Articles"): every topic of the
headline (first paragraph), plus every topic whose paragraphs hold at least 20% of the characters
of the article's paragraphs that have a topic. Article stance has three methods (`STANCE_METHODS`):
- `rule`, the guide's: the stance with the most characters among non-neutral paragraphs, if the
  non-neutral paragraphs make up at least a third of the article's characters; otherwise `neutral`;
- `score_weighted`: the same with each paragraph's stance probabilities in place of its label (a
  paragraph 60% negative counts 0.6 of its characters as negative);
- `headline_weighted`: the guide's rule with the headline counted as a quarter of the article,
  since a headline states what the article is about.
"""

import re

TOPIC_SHARE = 0.20
STANCE_SHARE = 1 / 3
HEADLINE_SHARE = 0.25  # headline_weighted: the headline's weight as a share of the whole article
DEFAULT_STANCE_METHOD = "rule"  # chosen by `python -m train.bench.aggregation` (README, "Article stance")


def split_paragraphs(text: str) -> list[str]:
    """Blocks separated by one or more blank lines (whitespace-only lines count as blank), each
    stripped; nothing else is dropped, so the headline stays the first paragraph."""
    blocks = re.split(r"\n[^\S\n]*\n", text.replace("\r\n", "\n"))
    return [b.strip() for b in blocks if b.strip()]


def check_stance_method(method: str) -> str:
    if method not in STANCE_METHODS:
        raise ValueError(f"stance_method={method!r}: expected one of {sorted(STANCE_METHODS)}")
    return method


def aggregate(paragraphs: list[dict], topics_field="topics", stance_field="stance", neutral="neutral",
              stance_method: str = DEFAULT_STANCE_METHOD) -> dict:
    """`paragraphs`: dicts with `text`, a topic list and a stance (and, for `score_weighted`,
    `<stance_field>_scores`), in article order. Returns {"topics": [...], "stance": ...}."""
    if not paragraphs:
        return {topics_field: [], stance_field: neutral}
    check_stance_method(stance_method)
    sizes = [len(p["text"]) for p in paragraphs]
    topical = sum(size for p, size in zip(paragraphs, sizes) if p[topics_field])
    topics = list(paragraphs[0][topics_field])
    per_topic = {}
    for p, size in zip(paragraphs, sizes):
        for t in p[topics_field]:
            per_topic[t] = per_topic.get(t, 0) + size
    for t, chars in per_topic.items():
        if t not in topics and topical and chars / topical >= TOPIC_SHARE:
            topics.append(t)
    stance = STANCE_METHODS[stance_method](paragraphs, sizes, stance_field, neutral)
    return {topics_field: sorted(topics, key=_topic_order(paragraphs, topics_field)), stance_field: stance}


def _stance_by_mass(mass: dict, total: float, neutral: str) -> str:
    """The non-neutral stance with the most weight, if non-neutral weight is a third of the total."""
    charged = {s: m for s, m in mass.items() if s != neutral and m > 0}
    if charged and sum(charged.values()) / total >= STANCE_SHARE:
        return max(sorted(charged), key=charged.get)
    return neutral


def _rule(paragraphs, sizes, field, neutral, weights=None):
    weights = weights or sizes
    mass = {}
    for p, w in zip(paragraphs, weights):
        mass[p[field]] = mass.get(p[field], 0) + w
    return _stance_by_mass(mass, sum(weights), neutral)


def _score_weighted(paragraphs, sizes, field, neutral):
    mass = {}
    for p, size in zip(paragraphs, sizes):
        for stance, prob in p.get(f"{field}_scores", {p[field]: 1.0}).items():
            mass[stance] = mass.get(stance, 0) + size * prob
    return _stance_by_mass(mass, sum(sizes), neutral)


def _headline_weighted(paragraphs, sizes, field, neutral):
    if len(paragraphs) < 2:
        return _rule(paragraphs, sizes, field, neutral)
    body = sum(sizes[1:])
    # the headline weighs HEADLINE_SHARE of the total: h / (h + body) = share
    weights = [HEADLINE_SHARE * body / (1 - HEADLINE_SHARE)] + sizes[1:]
    return _rule(paragraphs, sizes, field, neutral, weights)


STANCE_METHODS = {"rule": _rule, "score_weighted": _score_weighted, "headline_weighted": _headline_weighted}


def _topic_order(paragraphs, field):
    first_seen = {}
    for i, p in enumerate(paragraphs):
        for t in p[field]:
            first_seen.setdefault(t, i)
    return lambda t: (first_seen.get(t, 0), t)
