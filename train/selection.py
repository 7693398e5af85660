"""Which unlabelled paragraphs are worth labelling: the ones the model is unsure of, spread over
the kinds of text in the pool, with no repeats.

1. Uncertainty per task, from the model's scores: a multi-label task is as uncertain as its label
   whose score is closest to that label's decision threshold (1 at the threshold, 0 at 0 or 1); a
   single-label task is 1 minus the margin between its two most likely labels. Each task's
   uncertainties become percentile ranks in the pool, and a paragraph's priority is the highest of
   its ranks, so each task gets its share of the batch whatever the scale of its scores.
2. Diversity: the `candidates_per_pick * n` highest-priority paragraphs are embedded (the
   fine-tuned encoder, mean-pooled) and grouped by k-means into n clusters; from each cluster the
   highest-priority paragraph is taken (Zhdanov 2019, "Diverse mini-batch active learning").
3. No near-duplicates: a paragraph whose character n-gram TF-IDF cosine with one already taken is
   at least 0.9 (the corpus's own near-duplicate test, train/data.py) is passed over; clusters left
   empty are filled by priority from the candidates and as many paragraphs again.

    uncertainty = task_uncertainty(schema, probs, thresholds)        # {task: [n]}
    chosen = choose(texts, uncertainty, embed, n=100)              # indices into texts, best first
"""

import numpy as np

from train.data import NEAR_DUPLICATE_COSINE, normalise
from train.labels import MULTI, LabelSchema


def task_uncertainty(schema: LabelSchema, probs: np.ndarray, thresholds: dict | None = None) -> dict[str, np.ndarray]:
    """{task name: uncertainty in [0, 1] per paragraph} (see the module docstring)."""
    thresholds = thresholds or {}
    out = {}
    for task in schema.tasks:
        p = probs[:, task.slice]
        if task.kind == MULTI:
            cut = np.array([thresholds.get(task.name, {}).get(label, 0.5) for label in task.labels])
            room = np.where(p < cut, cut, 1 - cut)  # distance from the threshold to 0 (below) or 1 (above)
            out[task.name] = (1 - np.abs(p - cut) / room).max(axis=1)
        else:
            top2 = np.sort(p, axis=1)[:, -2:]
            out[task.name] = 1 - (top2[:, 1] - top2[:, 0])
    return out


def priority(uncertainty: dict[str, np.ndarray]) -> np.ndarray:
    """Per paragraph, the highest of its per-task percentile ranks (0 = surest, 1 = least sure)."""
    ranks = []
    for values in uncertainty.values():
        order = np.argsort(np.argsort(values, kind="stable"), kind="stable")
        ranks.append(order / max(len(values) - 1, 1))
    return np.max(ranks, axis=0)


def char_tfidf(texts: list[str]):
    """L2-normalised character n-gram TF-IDF rows, as train/data.py's near-duplicate check uses."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=1).fit_transform(
        [normalise(t) for t in texts])


def near_duplicates_of(texts: list[str], reference: list[str], chunk: int = 2000) -> np.ndarray:
    """Boolean mask over `texts`: same normalised text as, or near-duplicate of, a `reference` text."""
    known = {normalise(t) for t in reference}
    mask = np.array([normalise(t) in known for t in texts], dtype=bool)
    if not texts or not reference:
        return mask
    matrix = char_tfidf(list(reference) + list(texts))
    ref, ours = matrix[:len(reference)], matrix[len(reference):]
    for start in range(0, len(texts), chunk):  # a pool x corpus similarity matrix, a slice at a time
        best = (ours[start:start + chunk] @ ref.T).max(axis=1).toarray().ravel()
        mask[start:start + chunk] |= best >= NEAR_DUPLICATE_COSINE
    return mask


def choose(texts: list[str], uncertainty: dict[str, np.ndarray], embed, n: int, candidates_per_pick: int = 5,
           seed: int = 0) -> list[int]:
    """Indices of up to `n` paragraphs of `texts` to label, highest priority first.
    `embed`: texts -> [k, d] array (only the candidates are embedded)."""
    from sklearn.cluster import KMeans

    scores = priority(uncertainty)
    ranked = np.argsort(-scores, kind="stable")
    candidates, reserve = ranked[:n * candidates_per_pick], ranked[:2 * n * candidates_per_pick]
    if len(candidates) <= n:  # nothing to choose between: every candidate is its own cluster
        clusters = [[int(i)] for i in candidates]
    else:
        vectors = np.asarray(embed([texts[i] for i in candidates]), dtype=np.float64)
        groups = KMeans(n_clusters=n, random_state=seed, n_init=3).fit_predict(vectors)
        # candidates are in priority order, so each cluster's list is too
        clusters = [[int(c) for c, g in zip(candidates, groups) if g == k] for k in range(n)]
    tfidf = char_tfidf([texts[i] for i in reserve])
    row = {int(c): r for r, c in enumerate(reserve)}
    taken: list[int] = []

    def fresh(i):  # not a near-duplicate of a paragraph already taken
        if not taken:
            return True
        sims = tfidf[row[i]] @ tfidf[[row[t] for t in taken]].T
        return sims.max() < NEAR_DUPLICATE_COSINE and normalise(texts[i]) not in {normalise(texts[t]) for t in taken}

    for members in sorted(clusters, key=lambda m: -scores[m[0]]):
        pick = next((i for i in members if fresh(i)), None)
        if pick is not None:
            taken.append(pick)
    for i in reserve:  # clusters whose members all repeat a pick: fill by priority
        if len(taken) >= n:
            break
        if int(i) not in taken and fresh(int(i)):
            taken.append(int(i))
    return sorted(taken, key=lambda i: -scores[i])
