"""TF-IDF over a set of documents (each a list of words): the one weighting that story
clustering and sentence ranking share.

A term's weight in a document is (1 + log tf) · (1 + log((1 + N) / (1 + df))): sublinear term
frequency and smoothed inverse document frequency, document frequency counted over the N
documents given (a week's articles, or one article's sentences). Vectors are unit length, so
their dot product is their cosine.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from operator import mul

# 1 + log(tf) by tf, grown as larger counts turn up: one list lookup instead of a log per term.
_SUBLINEAR_TF = [0.0, 1.0]


class Weights:
    """The TF-IDF weights of a set of documents, kept as term counts and idf: a weight is only
    worked out where it is needed (clustering's key terms and cosines)."""

    def __init__(self, documents: Sequence[list[str]]) -> None:
        count = len(documents)
        self.counts = [Counter(words) for words in documents]
        self.df: Counter[str] = Counter(itertools.chain.from_iterable(self.counts))
        self.idf = {w: 1.0 + math.log((1 + count) / (1 + n)) for w, n in self.df.items()}
        squared = {w: v * v for w, v in self.idf.items()}.__getitem__
        tf = _SUBLINEAR_TF
        while len(tf) <= max(map(len, documents), default=0):  # no term is counted more often
            tf.append(1.0 + math.log(len(tf)))
        tf_squared = [v * v for v in tf].__getitem__
        # Mapped in C: at 10,000 articles a Python loop over the terms costs twice as much.
        self.norms = [
            math.sqrt(sum(map(mul, map(squared, c), map(tf_squared, c.values())))) or 1.0
            for c in self.counts
        ]

    def weights(self, i: int, terms: Sequence[str]) -> Iterator[float]:
        """The weights of document i's `terms` (each one it has), not normalized."""
        counts = self.counts[i]
        return map(
            mul,
            map(self.idf.__getitem__, terms),
            map(_SUBLINEAR_TF.__getitem__, map(counts.__getitem__, terms)),
        )

    def vector(self, i: int) -> dict[str, float]:
        """Document i's unit-length vector."""
        terms = list(self.counts[i])
        norm = self.norms[i]
        return {w: v / norm for w, v in zip(terms, self.weights(i, terms), strict=True)}

    def cosine(self, i: int, j: int) -> float:
        """The cosine of documents i and j."""
        shared = list(self.counts[i].keys() & self.counts[j].keys())
        dot: float = sum(map(mul, self.weights(i, shared), self.weights(j, shared)))
        return dot / (self.norms[i] * self.norms[j])


def vectors(documents: Sequence[list[str]]) -> list[dict[str, float]]:
    """Unit-length TF-IDF vectors over `documents`."""
    weights = Weights(documents)
    return [weights.vector(i) for i in range(len(documents))]


def cosine(a: dict[str, float], b: dict[str, float]) -> float:
    """Cosine of two unit vectors."""
    if len(a) > len(b):
        a, b = b, a
    return sum([v * b[w] for w, v in a.items() if w in b])
