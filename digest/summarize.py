"""Sentence splitting and ranking → an extractive summary within a length budget.

Method: each candidate sentence is a node in a graph whose edges are the TF-IDF cosine
similarity of the sentences' content words (stopwords removed, light stemming; IDF counted
over the article's own sentences); PageRank over that graph (power iteration) gives its
centrality, as in LexRank. The random surfer restarts at a sentence in proportion to
log(1 + its content words), so a sentence that says more weighs more, with diminishing returns
(as TextRank's log-length normalization): cosine alone overrates a short sentence that only
repeats the article's main name. The final score adds the sentence's similarity to the title
and a small bonus for the lede (the first sentence). The best `count` sentences that do not
repeat one another are taken whole, those that do not fit the budget dropped, and shown in
article order.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from operator import mul

import pysbd
from pysbd.lang.english import English
from pysbd.languages import LANGUAGE_CODES

from digest.models import Article
from digest.tfidf import cosine
from digest.tfidf import vectors as tfidf_vectors

# Weights of the final sentence score; centrality and title similarity are each scaled to 0..1.
CENTRALITY_WEIGHT = 1.0
TITLE_WEIGHT = 0.1
# News puts the gist in the lede; past it, position says little about a sentence's worth.
LEDE_WEIGHT = 0.1
DAMPING = 0.85
# A candidate this similar to a sentence already chosen says the same thing twice.
REDUNDANCY = 0.5
# Scores this close (relative) are a tie: the ranking between them is noise, not judgement.
TIE = 0.02
MIN_SENTENCE_CHARS = 30
MIN_FEED_SUMMARY_CHARS = 60

_ENDS_SENTENCE = re.compile(r"[.!?][\"'”’»)\]]*$")
# Sentence-ending punctuation followed by more text: a paragraph pysbd may need to split.
_MAYBE_BOUNDARY = re.compile(r"[.!?…][\"'”’»)\]]*\s+\S")
# Where a sentence surely ends: see _safe_pieces.
_SAFE_BREAK = re.compile(r"(?<=[A-Za-z]{2})[.!?]([\"”)]?)(\s+)(?=([\"“]?)[A-Z])")
_LAST_WORD = re.compile(r"\w+$")
_SINGLE_QUOTE = re.compile(r"(?:^|\s)['‘]\w")
_ABBREVIATIONS = frozenset(
    a.lower()
    for a in (
        *English.Abbreviation.ABBREVIATIONS,
        *English.Abbreviation.PREPOSITIVE_ABBREVIATIONS,
        *English.Abbreviation.NUMBER_ABBREVIATIONS,
    )
)
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_TRUNCATED = re.compile(r"(?:…|\.\.\.|\[\s*(?:…|\.\.\.|&hellip;)\s*\])\s*$")
_BOILERPLATE = re.compile(
    r"continue reading|read more|read the full|click here|the post .+ appeared first on",
    re.IGNORECASE,
)
_CAPTION = [
    re.compile(r"\s/\s+[^/.!?]{2,60}$"),  # "… in Helsinki. / AFP Yonhap News"
    re.compile(r"\((?:photo|image|picture|credit|file)\b[^)]*\)\s*$", re.IGNORECASE),
    re.compile(r"\((?:getty images|ap|afp|reuters|epa|shutterstock)\b[^)]*\)\s*$", re.IGNORECASE),
    re.compile(
        r"^(?:photo|image|picture|caption|pictured|file photo|credit)\s*[:|]", re.IGNORECASE
    ),
    re.compile(
        r"\b(?:photo(?:graph)?|image|picture)\s*(?:by|:|credit:?)\s+[^.!?]{2,60}$", re.IGNORECASE
    ),
]
_CREDIT_LINE = re.compile(
    r"^\(?(?:additional )?(?:reporting|editing|writing|compiled|written|words) by\b", re.IGNORECASE
)
_BYLINE = re.compile(r"^by\s+(.{2,100})$", re.IGNORECASE | re.DOTALL)
_STAMP = re.compile(r"^(?:published|updated|posted|last updated)\b.{0,60}$", re.IGNORECASE)
# "WASHINGTON (Reuters) — " or "PARIS, France - " opening the first sentence.
_DATELINE = re.compile(
    r"^[A-Z][A-Z.'’ ]{2,40}(?:,\s*[A-Z][A-Za-z.]+(?:\s[A-Z][A-Za-z.]+)?)?\s*(?:\([^)]{1,40}\))?"
    r"\s*[-–—]+\s+(?=\S)"
)

STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each few
    for from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just me more most my myself no nor not now of off on once only or
    other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up
    very was we were what when where which while who whom why will with would you your yours
    yourself yourselves said says say according told one two new year years last first mr mrs
    ms s t may might must shall get got make made many much well even still however""".split()
)


@dataclass
class Summary:
    """The sentences chosen to stand for an article."""

    sentences: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The summary as one string."""
        return " ".join(self.sentences)


@lru_cache(maxsize=8)
def _segmenter(language: str) -> pysbd.Segmenter:
    return pysbd.Segmenter(language=language, clean=False, char_span=True)


@lru_cache(maxsize=32)
def text_language(language: str) -> str:
    """The pysbd language for a setting like "en", "en-GB" or "fr_CA"; English if unknown.

    pysbd's English rules (a capital after ., ! or ?) are the safest guess for a language it
    does not know; stopwords and stemming apply to English only.
    """
    primary = re.split(r"[-_]", language.strip().lower(), maxsplit=1)[0]
    return primary if primary in LANGUAGE_CODES else "en"


def _paragraphs(text: str) -> list[str]:
    """Non-empty lines: blank lines and single line breaks both end a paragraph."""
    return [line.strip() for line in re.split(r"\r\n|\r|\n", text) if line.strip()]


def _open_quote_or_bracket(before: str) -> bool:
    """Whether `before` leaves a quotation or bracket open (pysbd never splits inside one)."""
    return (
        before.count('"') % 2 == 1
        or before.count("“") > before.count("”")
        or before.count("(") > before.count(")")
        or before.count("[") > before.count("]")
    )


def _safe_pieces(paragraph: str) -> list[str]:
    """Cut an English paragraph where a sentence surely ends; pysbd settles the rest.

    Surely: a word of 2+ letters (not an abbreviation), one ., ! or ? (and a closing quote),
    a space and a capital (or an opening quote, unless one just closed), outside quotes and
    brackets: where pysbd splits too (tests compare the two). pysbd is accurate but slow
    (~35 ms per 1,000 words), so it only sees the pieces that remain ambiguous.
    """
    if _SINGLE_QUOTE.search(paragraph):
        return [paragraph]
    pieces = []
    start = 0
    for match in _SAFE_BREAK.finditer(paragraph):
        if match.group(1) and match.group(3):
            continue  # pysbd keeps '"One." "Two."' together
        word = _LAST_WORD.search(paragraph, max(start, match.start() - 40), match.start())
        if word and word.group(0).lower() in _ABBREVIATIONS:
            continue
        if _open_quote_or_bracket(paragraph[start : match.start(2)]):
            continue
        pieces.append(paragraph[start : match.start(2)])
        start = match.end(2)
    pieces.append(paragraph[start:])
    return pieces


def _split_paragraphs(paragraphs: Sequence[str], language: str) -> list[str]:
    """Sentences of each paragraph; paragraphs never run into one another."""
    pieces = [_safe_pieces(p) if language == "en" else [p] for p in paragraphs]
    # pysbd costs ~0.4 ms a call: one call covers every piece that might hold 2+ sentences.
    hard = [piece for own in pieces for piece in own if _MAYBE_BOUNDARY.search(piece)]
    joined = "\n".join(hard)
    cuts = {span.start for span in _segmenter(language).segment(joined)} if hard else set()
    split: dict[str, list[str]] = {}
    offset = 0
    for piece in hard:
        end = offset + len(piece)
        starts = sorted({offset, *(c for c in cuts if offset < c < end)})
        split[piece] = [joined[a:b] for a, b in zip(starts, [*starts[1:], end], strict=True)]
        offset = end + 1
    sentences: list[str] = []
    for own_pieces in pieces:
        own: list[str] = []
        for part in (part for piece in own_pieces for part in split.get(piece, [piece])):
            part = part.strip()
            if own and not any(ch.isalnum() for ch in part):
                own[-1] += part  # a stray closing quote belongs to the sentence before
            elif part:
                own.append(part)
        sentences.extend(own)
    return sentences


def split_sentences(text: str, language: str = "en") -> list[str]:
    """Split `text` into sentences with pysbd; paragraphs (lines) are split separately first."""
    return _split_paragraphs(_paragraphs(text), text_language(language))


def _normal(text: str) -> str:
    """Case-, accent- and punctuation-blind form used to compare short strings."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_WORD.findall(text))


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    """A light English suffix stripper, so 'profits' and 'profit' count as one word."""
    if word.endswith(("'s", "’s")):
        word = word[:-2]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed"):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


# Every ASCII character that cannot be in a _WORD match becomes a space: after casefolding, the
# words of an ASCII text are then its whitespace-separated pieces (see split_words).
_NOT_WORD = str.maketrans(
    {chr(c): " " for c in range(128) if not (chr(c).isalnum() and chr(c) != "_") and chr(c) != "'"}
)


def split_words(text: str) -> list[str]:
    """The casefolded words of `text`: runs of letters and digits, joined by inner apostrophes.

    The same as _WORD.findall(text.casefold()); for ASCII text (most of it) str.split does the
    work at about a third of the regular expression's cost.
    """
    spaced = text.casefold().translate(_NOT_WORD)
    if not spaced.isascii():
        return _WORD.findall(spaced)
    pieces = spaced.split()
    if "'" not in spaced:
        return pieces
    # A piece with an apostrophe may hold several words ("a''b") or stray quotes ("'a'").
    return [w for piece in pieces for w in ([piece] if "'" not in piece else _WORD.findall(piece))]


# Word → its term in English ("" for a stopword or a stray letter), filled as words are met.
_TERMS: dict[str, str] = {}


def content_words(text: str, language: str = "en") -> list[str]:
    """The words of `text` that carry meaning: casefolded; in English, stemmed, no stopwords."""
    words = split_words(text)
    if text_language(language) != "en":
        return [w for w in words if len(w) > 1 or w.isdigit()]
    terms = _TERMS
    if len(terms) > 500_000:
        terms.clear()  # bounded: a long-running process meets ever more words
    for word in set(words).difference(terms):
        terms[word] = (
            "" if word in STOPWORDS or (len(word) < 2 and not word.isdigit()) else (_stem(word))
        )
    # Every word is in the table now: looked up and filtered in C (selection runs this 10,000
    # times).
    return list(filter(None, map(terms.__getitem__, words)))


def _is_caption_or_byline(paragraph: str) -> bool:
    """A photo caption or credit, a byline, or a date stamp: never summary material."""
    if any(pattern.search(paragraph) for pattern in _CAPTION):
        return True
    if _CREDIT_LINE.search(paragraph) or _STAMP.search(paragraph):
        return True
    byline = _BYLINE.match(paragraph)
    if byline:
        # "By Jane Doe, Staff Writer" is mostly capitalised names; "By 2030, sales …" is not.
        words = [w for w in re.split(r"[\s,|/]+", byline.group(1)) if w and w.lower() != "and"]
        capitalised = sum(1 for w in words if w[0].isupper())
        return capitalised >= max(1, math.ceil(0.6 * len(words)))
    return False


def _body_paragraphs(text: str) -> list[str]:
    """The article's paragraphs without captions (printed twice or credited), bylines, stamps."""
    paragraphs = _paragraphs(text)
    keys = [" ".join(p.split()) for p in paragraphs]
    # Scraped pages print a photo's caption twice in a row (alt text, then the caption).
    twice = {a for a, b in zip(keys, keys[1:], strict=False) if a == b}
    return [
        p
        for p, key in zip(paragraphs, keys, strict=True)
        if key not in twice and not _is_caption_or_byline(p)
    ]


def _candidates(article: Article, language: str) -> list[str]:
    """Sentences fit to stand in a summary, in article order."""
    title = _normal(article.title)
    out = []
    for index, sentence in enumerate(_split_paragraphs(_body_paragraphs(article.text), language)):
        if index == 0:
            sentence = _DATELINE.sub("", sentence)
        if len(sentence) < MIN_SENTENCE_CHARS or not _ENDS_SENTENCE.search(sentence):
            continue
        if len(sentence) <= 2 * len(title) and _normal(sentence) == title:
            continue
        out.append(sentence)
    return out


def good_feed_summary(article: Article) -> bool:
    """Whether the source's own summary can be used as is: whole, informative, not boilerplate."""
    summary = (article.summary or "").strip()
    if len(summary) < MIN_FEED_SUMMARY_CHARS or _TRUNCATED.search(summary):
        return False
    if not _ENDS_SENTENCE.search(summary) or _BOILERPLATE.search(summary):
        return False
    return _normal(summary) not in _normal(article.title)


def _similarity(vectors: Sequence[dict[str, float]]) -> list[dict[int, float]]:
    """Cosine similarity of every pair sharing a word, as neighbour maps (the graph's edges)."""
    postings: dict[str, list[tuple[int, float]]] = {}
    for i, vector in enumerate(vectors):
        for word, weight in vector.items():
            postings.setdefault(word, []).append((i, weight))
    edges: list[dict[int, float]] = [{} for _ in vectors]
    # Walking shared words only is far cheaper than comparing every pair of sentences.
    for posting in postings.values():
        for a, (i, wi) in enumerate(posting):
            row = edges[i]
            for j, wj in posting[a + 1 :]:
                row[j] = row.get(j, 0.0) + wi * wj
    for i, row in enumerate(edges):
        for j, weight in row.items():
            edges[j][i] = weight
    return edges


def _pagerank(
    edges: Sequence[dict[int, float]], restart: Sequence[float], damping: float = DAMPING
) -> list[float]:
    """PageRank of a weighted undirected graph by power iteration; the surfer restarts at node
    j with probability restart[j] (a distribution summing to 1)."""
    size = len(edges)
    out_weight = [sum(row.values()) for row in edges]
    rows = [(list(row), list(row.values())) for row in edges]
    isolated = [j for j in range(size) if out_weight[j] == 0.0]
    rank = list(restart)
    for _ in range(100):
        # A sentence sharing no words with the others hands its rank back to the restart.
        jump = (1.0 - damping) + damping * sum(rank[j] for j in isolated)
        share = [r / w if w else 0.0 for r, w in zip(rank, out_weight, strict=True)]
        new = [
            jump * start + damping * sum(map(mul, weights, map(share.__getitem__, neighbours)))
            for start, (neighbours, weights) in zip(restart, rows, strict=True)
        ]
        delta = sum(abs(x - y) for x, y in zip(new, rank, strict=True))
        rank = new
        if delta < 1e-6:
            break
    return rank


def _score(
    sentences: Sequence[str], title: str, language: str
) -> tuple[list[float], list[dict[str, float]]]:
    """Each sentence's score and TF-IDF vector."""
    words = [content_words(s, language) for s in sentences]
    vectors = tfidf_vectors([*words, content_words(title, language)])
    title_vector = vectors.pop()
    size = len(sentences)
    # The surfer lands on a sentence as if picking a word, with diminishing returns per word.
    weight = [math.log1p(len(w)) for w in words]
    total = sum(weight)
    restart = [w / total for w in weight] if total else [1.0 / size] * size
    centrality = _pagerank(_similarity(vectors), restart)
    top_centrality = max(centrality)
    to_title = [cosine(v, title_vector) for v in vectors]
    top_title = max(to_title) or 1.0
    scores = [
        CENTRALITY_WEIGHT * centrality[i] / top_centrality
        + TITLE_WEIGHT * to_title[i] / top_title
        + (LEDE_WEIGHT if i == 0 else 0.0)
        for i in range(size)
    ]
    return scores, vectors


def rank_sentences(sentences: Sequence[str], title: str = "", language: str = "en") -> list[float]:
    """Score each sentence: centrality in the similarity graph, title similarity, the lede."""
    return _score(sentences, title, language)[0] if sentences else []


def _fit(
    ranked: Sequence[int],
    sentences: Sequence[str],
    count: int,
    budget: int,
    vectors: Sequence[dict[str, float]],
    scores: Sequence[float],
) -> list[int]:
    """Indexes of the best `count` sentences that do not repeat one another, less those that
    overflow the budget; the best always, even alone over it.

    A sentence that does not fit is dropped, not replaced by one further down the ranking: a
    low-ranked short sentence beside the best reads worse than the best alone. Only a sentence
    that ties with the last of the best (within TIE of its score) may stand in for it.
    """
    best: list[int] = []
    for index in ranked:
        if len(best) >= count and scores[index] < (1.0 - TIE) * scores[best[count - 1]]:
            break
        if not any(cosine(vectors[index], vectors[c]) > REDUNDANCY for c in best):
            best.append(index)
    chosen: list[int] = []
    used = 0
    for index in best:
        length = len(sentences[index]) + (1 if chosen else 0)
        if len(chosen) == count or (chosen and used + length > budget):
            continue
        chosen.append(index)
        used += length
    return sorted(chosen)


def _lead(parts: Sequence[str], count: int, budget: int) -> Summary:
    """The opening sentences of a source's summary: the first always, then while they fit."""
    chosen: list[str] = []
    for part in parts[:count]:
        if chosen and len(" ".join([*chosen, part])) > budget:
            break
        chosen.append(part)
    return Summary(chosen)


def summarize(
    article: Article, *, sentences: int = 2, budget: int = 320, language: str = "en"
) -> Summary:
    """Up to `sentences` whole sentences within `budget` characters, in article order.

    The article's own summary is kept when it is good (whole, not the title, not boilerplate);
    otherwise sentences are ranked by centrality, title similarity and the lede. When even the
    best sentence is longer than the budget, that one sentence is returned whole. Captions,
    bylines, datelines, fragments under 30 characters and unpunctuated lines are never chosen.
    """
    language = text_language(language)
    if good_feed_summary(article):
        return _lead(split_sentences(article.summary or "", language), sentences, budget)
    candidates = _candidates(article, language)
    if not candidates:
        # A teaser with no usable body: the source's summary, even clipped, beats nothing.
        parts = [
            p
            for p in split_sentences(article.summary or "", language)
            if not _BOILERPLATE.search(p)
        ]
        return _lead(parts, sentences, budget)
    scores, vectors = _score(candidates, article.title, language)
    ranked = sorted(range(len(candidates)), key=lambda i: (-scores[i], i))
    chosen = _fit(ranked, candidates, sentences, budget, vectors, scores)
    return Summary([candidates[i] for i in chosen])
