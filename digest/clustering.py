"""Stories, not articles: group the articles that report the same event.

Each article is a TF-IDF vector over the content words (stopwords out, light stemming) of its
title and lead (the first LEAD_WORDS words of its body, else its own summary); document
frequencies are counted over the articles being grouped, so words every article uses weigh
little. Two articles whose vectors' cosine is at least the threshold (`[selection]
cluster_threshold`) report the same event, and connected articles form one story.

All pairs are never compared. Each article is indexed under its KEY_TERMS heaviest terms
(highest TF-IDF weight: the names, places and numbers that make an event, rare in the week),
among those another article has too, leaving out terms in more than MAX_DF_SHARE of the
articles (or MIN_DF_CAP, if more); two articles become candidates when they share MIN_SHARED
of those key terms, and only candidates get their exact cosine. Reports
of one event share their key names, so this finds them, in time close to linear in the
number of articles; the tests check it finds every pair an all-pairs comparison finds on the
story fixtures.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from digest.models import Article
from digest.summarize import content_words

# Enough of the body to name the event (who, what, where: about two paragraphs of wire
# copy), short enough to leave out the background that makes two events on one topic alike.
LEAD_WORDS = 80
# Paraphrases of one event score 0.53-0.86 on the fixtures in tests/fixtures/stories/, other
# events on the same subject 0.35 at most: the default sits between.
DEFAULT_THRESHOLD = 0.42
# Terms per article in the candidate index, and how many articles a key term may appear in:
# a word in more than 1% of a busy week's articles (or 30 of a quiet one's) names no one event.
KEY_TERMS = 8
MAX_DF_SHARE = 0.01
MIN_DF_CAP = 30
# One shared rare word is a coincidence; reports of one event share several.
MIN_SHARED = 2


def fingerprint_words(article: Article, language: str = "en") -> list[str]:
    """The content words that stand for an article's event: its title and lead."""
    lead = " ".join(article.text.split(maxsplit=LEAD_WORDS)[:LEAD_WORDS]) or article.summary or ""
    return content_words(f"{article.title}\n{lead}", language)


def vectors(documents: Sequence[list[str]]) -> list[dict[str, float]]:
    """Unit-length TF-IDF vectors (sublinear tf, smoothed idf) over `documents`."""
    return _vectors(documents)[0]


def _vectors(documents: Sequence[list[str]]) -> tuple[list[dict[str, float]], Counter[str]]:
    """The vectors and the document frequency of each term."""
    count = len(documents)
    counts = [Counter(words) for words in documents]
    df: Counter[str] = Counter()
    for terms in counts:
        df.update(terms.keys())
    idf = {w: 1.0 + math.log((1 + count) / (1 + n)) for w, n in df.items()}
    out = []
    for terms in counts:
        weights = {w: idf[w] * (1.0 + math.log(tf)) if tf > 1 else idf[w]
                   for w, tf in terms.items()}
        norm = math.sqrt(sum([v * v for v in weights.values()])) or 1.0
        out.append({w: v / norm for w, v in weights.items()})
    return out, df


def cosine(a: dict[str, float], b: dict[str, float]) -> float:
    """Cosine of two unit vectors."""
    return sum([a[w] * b[w] for w in a.keys() & b.keys()])


def similar_pairs(
    vecs: Sequence[dict[str, float]], threshold: float, df: Counter[str] | None = None
) -> list[tuple[int, int, float]]:
    """Pairs (i < j) of unit vectors sharing key terms whose cosine is at least `threshold`.

    `df`: in how many of `vecs` each term is, when the caller has it already.
    """
    if df is None:
        df = Counter()
        for vector in vecs:
            df.update(vector.keys())
    cap = max(MIN_DF_CAP, int(MAX_DF_SHARE * len(vecs)))
    # A word no other article has pairs with nothing: the key terms are shared ones.
    eligible = {term for term, n in df.items() if 1 < n <= cap}
    index: dict[str, list[int]] = {}
    for i, vector in enumerate(vecs):
        rare = [(-vector[term], term) for term in vector.keys() & eligible]
        for _, term in heapq.nsmallest(KEY_TERMS, rare):
            index.setdefault(term, []).append(i)
    shared: Counter[tuple[int, int]] = Counter()
    for posting in index.values():
        shared.update(itertools.combinations(posting, 2))  # postings are in index order
    pairs = []
    for i, j in sorted(pair for pair, count in shared.items() if count >= MIN_SHARED):
        similarity = cosine(vecs[i], vecs[j])
        if similarity >= threshold:
            pairs.append((i, j, similarity))
    return pairs


@contextmanager
def no_cycle_collection() -> Iterator[None]:
    """Pause the cyclic garbage collector: these dicts and lists hold no cycles, and with
    10,000 articles its repeated passes over them cost ~15% of bench/lineup.py's time.
    Nested uses are fine: only the outermost one turns it back on."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _root(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def group(
    articles: Sequence[Article], threshold: float = DEFAULT_THRESHOLD, language: str = "en"
) -> list[list[int]]:
    """Indexes of `articles` grouped by event, each group and the list in index order.

    A threshold above 1 groups nothing (every article is its own story).
    """
    if threshold > 1.0:
        return [[i] for i in range(len(articles))]
    with no_cycle_collection():
        vecs, df = _vectors([fingerprint_words(a, language) for a in articles])
        pairs = similar_pairs(vecs, threshold, df)
    parent = list(range(len(articles)))
    for i, j, _ in pairs:
        a, b = _root(parent, i), _root(parent, j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for i in range(len(articles)):
        groups.setdefault(_root(parent, i), []).append(i)
    return list(groups.values())
