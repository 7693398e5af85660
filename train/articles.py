"""Articles: split into paragraphs, and aggregate paragraph labels into article labels.

The aggregation is the annotation guide's baseline rule (data/ANNOTATION.md, "Articles"):
- topics: every topic of the headline (first paragraph), plus every topic whose paragraphs hold at
  least 20% of the characters of the article's paragraphs that have a topic;
- stance: the stance with the most characters among non-neutral paragraphs, if the non-neutral
  paragraphs make up at least a third of the article's characters; otherwise `neutral`.
"""

import re

TOPIC_SHARE = 0.20
STANCE_SHARE = 1 / 3


def split_paragraphs(text: str) -> list[str]:
    """Blocks separated by one or more blank lines (whitespace-only lines count as blank), each
    stripped; nothing else is dropped, so the headline stays the first paragraph."""
    blocks = re.split(r"\n[^\S\n]*\n", text.replace("\r\n", "\n"))
    return [b.strip() for b in blocks if b.strip()]


def aggregate(paragraphs: list[dict], topics_field="topics", stance_field="stance", neutral="neutral") -> dict:
    """`paragraphs`: dicts with `text`, a topic list and a stance, in article order.
    Returns {"topics": [...], "stance": ...} for the article."""
    if not paragraphs:
        return {topics_field: [], stance_field: neutral}
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
    per_stance = {}
    for p, size in zip(paragraphs, sizes):
        if p[stance_field] != neutral:
            per_stance[p[stance_field]] = per_stance.get(p[stance_field], 0) + size
    charged = sum(per_stance.values())
    stance = neutral
    if per_stance and charged / sum(sizes) >= STANCE_SHARE:
        stance = max(sorted(per_stance), key=per_stance.get)
    return {topics_field: sorted(topics, key=_topic_order(paragraphs, topics_field)), stance_field: stance}


def _topic_order(paragraphs, field):
    first_seen = {}
    for i, p in enumerate(paragraphs):
        for t in p[field]:
            first_seen.setdefault(t, i)
    return lambda t: (first_seen.get(t, 0), t)
