"""Stories, not articles: group the articles that report the same event.

Each article is a TF-IDF vector (digest/tfidf.py) over the content words (stopwords out,
stemmed) of its title and lead (the first LEAD_WORDS words of its body, else its own
summary); document frequencies are counted over the articles being grouped, so words every
article uses weigh little. Two articles whose vectors' cosine is at least the threshold
(`[selection] cluster_threshold`) report the same event, and connected articles form one story.

All pairs are never compared. Each article is indexed under its KEY_TERMS heaviest terms
(highest TF-IDF weight: the names, places and numbers that make an event, rare in the week),
among those another article has too, leaving out terms in more than MAX_DF_SHARE of the
articles (or MIN_DF_CAP, if more); two articles become candidates when they share MIN_SHARED
of those key terms, and only candidates get their exact cosine (and, while grouping, only
those not already joined through others: their cosine could change nothing). Reports of one
event share their key names, so this finds them, in time close to linear in the number of
articles; the tests check it finds every pair an all-pairs comparison finds on the story
fixtures.
"""

from __future__ import annotations

import gc
import itertools
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from operator import neg

from digest.models import Article
from digest.summarize import content_words
from digest.tfidf import Weights

# Enough of the body to name the event (who, what, where: about two paragraphs of wire
# copy), short enough to leave out the background that makes two events on one topic alike.
LEAD_WORDS = 80
# Paraphrases of one event score 0.54-0.98 on the fixtures in tests/fixtures/stories/, other
# events on the same subject 0.23 at most (0.53-0.86 and 0.35 with the old English-only stop
# words and suffix stripper): the default sits between.
DEFAULT_THRESHOLD = 0.42
# Terms per article in the candidate index, and how many articles a key term may appear in:
# a word in more than 1% of a busy week's articles (or 30 of a quiet one's) names no one event.
KEY_TERMS = 8
MAX_DF_SHARE = 0.01
MIN_DF_CAP = 30
# One shared rare word is a coincidence; reports of one event share several.
MIN_SHARED = 2


def fingerprint_words(
    article: Article, language: str = "en", body: Sequence[str] | None = None
) -> list[str]:
    """The content words that stand for an article's event: its title and lead.

    `body`: the article's text split on whitespace (str.split, with a maxsplit of LEAD_WORDS or
    more), when the caller has split it already.
    """
    pieces = article.text.split(maxsplit=LEAD_WORDS) if body is None else body
    lead = " ".join(pieces[:LEAD_WORDS]) or article.summary or ""
    return content_words(f"{article.title}\n{lead}", language)


def _key_terms(weights: Weights, i: int, eligible: set[str]) -> Iterable[str]:
    """Document i's KEY_TERMS heaviest terms among `eligible` (ties: alphabetical)."""
    terms = weights.counts[i].keys() & eligible
    if len(terms) <= KEY_TERMS:
        return terms
    ordered = list(terms)
    ranked = sorted(zip(map(neg, weights.weights(i, ordered)), ordered, strict=True))
    return [term for _, term in ranked[:KEY_TERMS]]


def _candidates(weights: Weights) -> list[tuple[int, int]]:
    """Pairs (i < j), in order, of documents sharing MIN_SHARED of their key terms."""
    cap = max(MIN_DF_CAP, int(MAX_DF_SHARE * len(weights.counts)))
    # A word no other article has pairs with nothing: the key terms are shared ones.
    eligible = {term for term, n in weights.df.items() if 1 < n <= cap}
    index: dict[str, list[int]] = {}
    for i in range(len(weights.counts)):
        for term in _key_terms(weights, i, eligible):
            index.setdefault(term, []).append(i)
    shared: Counter[tuple[int, int]] = Counter()
    for posting in index.values():
        shared.update(itertools.combinations(posting, 2))  # postings are in index order
    return sorted(pair for pair, count in shared.items() if count >= MIN_SHARED)


def similar_pairs(documents: Sequence[list[str]], threshold: float) -> list[tuple[int, int, float]]:
    """Pairs (i < j) of documents sharing key terms whose cosine is at least `threshold`."""
    weights = Weights(documents)
    pairs = []
    for i, j in _candidates(weights):
        similarity = weights.cosine(i, j)
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


def group_words(
    documents: Sequence[list[str]], threshold: float = DEFAULT_THRESHOLD
) -> list[list[int]]:
    """Indexes of `documents` (each its fingerprint words) grouped by event, each group and the
    list in index order. A threshold above 1 groups nothing."""
    if threshold > 1.0:
        return [[i] for i in range(len(documents))]
    parent = list(range(len(documents)))
    with no_cycle_collection():
        weights = Weights(documents)
        for i, j in _candidates(weights):
            a, b = _root(parent, i), _root(parent, j)
            # Already one story through others: how alike these two are changes nothing.
            if a != b and weights.cosine(i, j) >= threshold:
                parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for i in range(len(documents)):
        groups.setdefault(_root(parent, i), []).append(i)
    return list(groups.values())


def group(
    articles: Sequence[Article], threshold: float = DEFAULT_THRESHOLD, language: str = "en"
) -> list[list[int]]:
    """Indexes of `articles` grouped by event, each group and the list in index order.

    A threshold above 1 groups nothing (every article is its own story; see `group_words`).
    """
    return group_words([fingerprint_words(a, language) for a in articles], threshold)
