"""Sentence splitting and ranking → an extractive summary within a length budget.

A summary must read as a beginning and carry the news. In order of preference:

1. the page's own standfirst or description (the feed summary, `og:description`), when it is
   whole, real sentences that open cleanly (`good_feed_summary`);
2. the article's lede, its first sentence, when it stands on its own, shares a word with the
   headline, and either is at least as central as the average sentence or alone states
   something the headline announces (news puts the gist first; a scene-setting opener or a
   hook is passed over);
3. the sentences most central to the article: each candidate is a node in a graph whose
   edges are the TF-IDF cosine similarity (digest/tfidf.py) of the sentences' content words
   (stop words out, Snowball-stemmed in the article's language; IDF over the article's own
   sentences); PageRank over that graph, with a uniform restart, gives its centrality
   (LexRank, as published: no weight in it is fitted to our test articles).

No summary opens mid-thought: a sentence that starts with a pronoun or connective pointing
back ("It…", "However,…", "Und er…", "That's been…") or in lower case (a sentence cut in
two) is only shown right after the sentence it follows in the article. Calls to action
("You can download … here."), captions, bylines, datelines and fragments are never shown.
Sentences are taken whole, those that do not fit the budget dropped, and shown in article
order.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from operator import mul
from typing import Any

import pysbd
import snowballstemmer
import stopwordsiso
from pysbd.lang.english import English
from pysbd.languages import LANGUAGE_CODES

from digest.models import Article
from digest.tfidf import cosine
from digest.tfidf import vectors as tfidf_vectors

DAMPING = 0.85  # PageRank's usual damping
# A candidate this similar to a sentence already chosen says the same thing twice.
REDUNDANCY = 0.5
MIN_SENTENCE_CHARS = 30
MIN_FEED_SUMMARY_CHARS = 60
# Fewer words than this is a label or a cut, not a sentence that says something.
MIN_SENTENCE_WORDS = 4

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
_STAMP = re.compile(
    r"^(?:published|updated|posted|last updated|(?:article )?mis à jour|publié|"
    r"(?:zuletzt )?aktualisiert|veröffentlicht|stand:)\b.{0,60}$",
    re.IGNORECASE,
)
# "WASHINGTON (Reuters) — " or "PARIS, France - " opening the first sentence.
_DATELINE = re.compile(
    r"^[A-Z][A-Z.'’ ]{2,40}(?:,\s*[A-Z][A-Za-z.]+(?:\s[A-Z][A-Za-z.]+)?)?\s*(?:\([^)]{1,40}\))?"
    r"\s*[-–—]+\s+(?=\S)"
)

# ISO 639-1 code → Snowball stemmer, for the languages stopwordsiso has a list of too.
_SNOWBALL = {
    "ar": "arabic", "ca": "catalan", "cs": "czech", "da": "danish", "de": "german",
    "el": "greek", "en": "english", "es": "spanish", "et": "estonian", "eu": "basque",
    "fi": "finnish", "fr": "french", "ga": "irish", "hi": "hindi", "hu": "hungarian",
    "hy": "armenian", "id": "indonesian", "it": "italian", "lt": "lithuanian", "nl": "dutch",
    "no": "norwegian", "pl": "polish", "pt": "portuguese", "ro": "romanian", "ru": "russian",
    "sv": "swedish", "tr": "turkish",
}  # fmt: skip
# A language is told from a text only when this many of its words are counted.
MIN_WORDS_TO_DETECT = 20

# First words that point back to a sentence before (pronouns, connectives), by language;
# the demonstratives ("This…", "Das…") only when a verb follows ("This is…", "Das hat…").
_BACK_WORDS = {
    "en": """he she it they him them his her its their theirs it's that's and but or nor so yet
        also however still meanwhile moreover furthermore besides instead nevertheless
        nonetheless therefore thus hence then otherwise similarly likewise additionally indeed
        again too plus overall""",
    "de": """er sie ihm ihn ihr ihre ihren ihrem ihrer sein seine seinen seinem seiner ihnen und
        aber oder doch denn sondern auch außerdem zudem ebenfalls allerdings jedoch trotzdem
        dennoch deshalb deswegen daher darum dadurch dabei damit dazu davon darauf danach dann
        somit also insgesamt stattdessen ansonsten hingegen immerhin inzwischen dort
        insbesondere beispielsweise ebenso gleichzeitig""",
    "fr": """il elle ils elles lui leur leurs cela ceci ça mais et ou donc ainsi pourtant
        cependant toutefois néanmoins aussi puis ensuite alors sinon enfin notamment""",
    "es": """él ella ellos ellas esto eso pero y o además también así entonces sin embargo
        luego""",
    "nl": """hij zij ze hem haar hun en maar of dus ook echter toch daarom daarna bovendien
        verder bijvoorbeeld""",
}
_DEMONSTRATIVES = {
    "en": ("this that these those such", "is was are were has had have will would could can "
           "may might must should means meant comes came makes made shows showed follows"),
    "de": ("das dies diese dieser dieses", "ist war sind waren hat hatte haben wird wurde "
           "würde kann könnte soll muss zeigt bedeutet heißt macht gilt liegt geht kommt klingt "
           "sieht bleibt passt stimmt reicht betrifft"),
}  # fmt: skip
_BACK_PHRASES = re.compile(
    r"^(?:in addition|as a result|on the other hand|despite this|even so|after that|by contrast|"
    r"in contrast|that said|for example|for instance|in fact|at the same time|in particular|"
    r"in other words|zum beispiel|vor allem|sin embargo|por eso|por lo tanto|por ejemplo|"
    r"en particular|en outre|de plus|par ailleurs|par exemple|en particulier)\b",
    re.IGNORECASE,
)
# Calls to action and page furniture, never news: "You can download Python 3.6.0 here."
_CALL_TO_ACTION = re.compile(
    r"^(?:you can (?:\w+ ){0,4}(?:here|below|now|online)\b|bewerten:|(?:click|download|"
    r"subscribe|sign up|follow us|share this|read (?:more|also|the full)|see also|find out more|"
    r"learn more|lesen sie|hier (?:können|finden|gibt es)|mehr (?:dazu|zum thema|infos?)|"
    r"teilen sie|jetzt (?:anmelden|abonnieren)|gefällt mir|weiterlesen)\b)"
    r"|^(?:.*\byou\b.*|(?:download|read|watch|listen|find|see|get)\b.*)\bhere[.!]$",
    re.IGNORECASE,
)
# A date stamped in front of the first sentence, glued by the page: "Monday, 6 January 2020 It".
_MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december|"
    "januar|jänner|februar|märz|mai|juni|juli|oktober|dezember"
)
_LEADING_DATE = re.compile(
    r"^(?:(?:mon|tues|wednes|thurs|fri|satur|sun)day|montag|dienstag|mittwoch|donnerstag|"
    r"freitag|samstag|sonntag)?,?\s*(?:\d{1,2}\.?\s+(?:"
    + _MONTHS
    + r")\s+\d{4}|(?:"
    + _MONTHS
    + r")\s+\d{1,2},?\s+\d{4})\s+(?=[A-ZÄÖÜ])",
    re.IGNORECASE,
)
# Two sentences run together by the page, with no space: "recovery?Monday", "millennia.However".
_GLUED = re.compile(r"(?<=[a-zäöüß]{2}[.!?])(?=[A-ZÄÖÜ][a-zäöüß])")


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
def primary_language(language: str) -> str:
    """The ISO 639-1 code of a setting like "en", "en-GB" or "fr_CA", lower case."""
    return re.split(r"[-_]", language.strip().lower(), maxsplit=1)[0]


@lru_cache(maxsize=32)
def text_language(language: str) -> str:
    """The pysbd language for a setting like "en", "en-GB" or "fr_CA"; English if unknown.

    pysbd's English rules (a capital after ., ! or ?) are the safest guess for a language it
    does not know.
    """
    primary = primary_language(language)
    return primary if primary in LANGUAGE_CODES else "en"


@lru_cache(maxsize=64)
def stop_words(language: str) -> frozenset[str]:
    """The stop words of a language (stopwordsiso's list, casefolded); none if it has none."""
    primary = primary_language(language)
    if not stopwordsiso.has_lang(primary):
        return frozenset()
    return frozenset(w.casefold() for w in stopwordsiso.stopwords(primary))


@lru_cache(maxsize=64)
def _stemmer(language: str) -> Any:
    """Snowball's stemmer for a language, or None where Snowball has none."""
    name = _SNOWBALL.get(primary_language(language))
    return snowballstemmer.stemmer(name) if name else None


@lru_cache(maxsize=1)
def _stop_word_languages() -> dict[str, tuple[str, ...]]:
    """Every stop word of the languages Snowball stems, and the languages it is one of."""
    index: dict[str, list[str]] = {}
    for code in _SNOWBALL:
        for word in stop_words(code):
            index.setdefault(word, []).append(code)
    return {word: tuple(codes) for word, codes in index.items()}


def detect_language(text: str, default: str = "en") -> str:
    """The language of `text`, told by which language's stop words it uses most (they are
    most of any text's words); `default` (the newsletter's language) when the text is too
    short to tell or no other language's stop words outnumber its own."""
    words = split_words(text[:5000])
    if len(words) < MIN_WORDS_TO_DETECT:
        return default
    languages = _stop_word_languages()
    hits: Counter[str] = Counter()
    for word, n in Counter(words).items():
        for code in languages.get(word, ()):
            hits[code] += n
    own = primary_language(default)
    best = max(sorted(hits), key=hits.__getitem__, default=own)
    return best if hits[best] > hits[own] else default


def _paragraphs(text: str) -> list[str]:
    """Non-empty lines: blank lines and single line breaks both end a paragraph, and so does
    a sentence end the page glued to the next ("recovery?Monday", "millennia.However")."""
    return [
        piece.strip()
        for line in re.split(r"\r\n|\r|\n", text)
        for piece in _GLUED.split(line)
        if piece.strip()
    ]


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


# Per language, word → its term ("" for a stop word or a stray letter), filled as words are met.
_TERMS: dict[str, dict[str, str]] = {}


def content_words(text: str, language: str = "en") -> list[str]:
    """The words of `text` that carry meaning: casefolded, stop words out, stemmed by
    Snowball's stemmer for `language` (unstemmed in a language it has none for)."""
    words = split_words(text)
    language = primary_language(language)
    terms = _TERMS.get(language)
    if terms is None or len(terms) > 500_000:  # bounded: a long-running process meets ever more
        terms = _TERMS[language] = {}
    new = set(words).difference(terms)
    if new:
        stops = stop_words(language)
        stemmer = _stemmer(language)
        for word in new:
            if word in stops or (len(word) < 2 and not word.isdigit()):
                terms[word] = ""
            else:
                terms[word] = stemmer.stemWord(word) if stemmer else word
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


@lru_cache(maxsize=64)
def _back_words(language: str) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """A language's words that point back, its demonstratives, and the verbs that make a
    demonstrative point back ("This is…", not "This week…")."""
    primary = primary_language(language)
    demonstratives, verbs = _DEMONSTRATIVES.get(primary, ("", ""))
    # Casefolded, as split_words gives them ("außerdem" → "ausserdem").
    return (
        frozenset(w.casefold() for w in _BACK_WORDS.get(primary, "").split()),
        frozenset(w.casefold() for w in demonstratives.split()),
        frozenset(w.casefold() for w in verbs.split()),
    )


def opens_mid_thought(sentence: str, language: str = "en") -> bool:
    """Whether a sentence cannot open a summary: it starts in lower case (the rest of a
    sentence cut in two), or with a pronoun or connective that points back to a sentence the
    reader has not seen ("It…", "However, …", "Und er…", "That's been…", "This is…")."""
    text = sentence.lstrip(" \"'“”‘’«»„(–—-…")
    if not text:
        return False
    if text[0].islower():
        return True
    words = split_words(text[:80].replace("’", "'"))
    if not words:
        return False
    back, demonstratives, verbs = _back_words(language)
    if words[0] in back or _BACK_PHRASES.match(text):
        return True
    return words[0] in demonstratives and len(words) > 1 and words[1] in verbs


def _candidates(article: Article, language: str) -> list[str]:
    """Sentences fit to stand in a summary, in article order."""
    title = _normal(article.title)
    out = []
    paragraphs = _body_paragraphs(article.text)
    for index, sentence in enumerate(_split_paragraphs(paragraphs, text_language(language))):
        if index == 0:
            sentence = _DATELINE.sub("", sentence)
        sentence = _LEADING_DATE.sub("", sentence)
        if len(sentence) < MIN_SENTENCE_CHARS or not _ENDS_SENTENCE.search(sentence):
            continue
        if len(sentence) <= 2 * len(title) and _normal(sentence) == title:
            continue
        if _CALL_TO_ACTION.search(sentence) or _BOILERPLATE.search(sentence):
            continue
        out.append(sentence)
    return out


def good_feed_summary(article: Article, language: str = "en") -> bool:
    """Whether the source's own summary (a feed's, or the page's description) can be used as
    is: whole sentences that open cleanly, informative, neither the title nor boilerplate."""
    summary = (article.summary or "").strip()
    if len(summary) < MIN_FEED_SUMMARY_CHARS or _TRUNCATED.search(summary):
        return False
    if not _ENDS_SENTENCE.search(summary) or _BOILERPLATE.search(summary):
        return False
    if _normal(summary) in _normal(article.title):
        return False
    sentences = split_sentences(summary, language)
    # A tagline ("FISCH&FANG. Deutschlands erstes Anglermagazin.") or a cut ("… Am 15.") is
    # not a standfirst: every sentence a real one, of a few words at least.
    if any(len(split_words(s)) < MIN_SENTENCE_WORDS for s in sentences):
        return False
    if any(_CALL_TO_ACTION.search(s) for s in sentences):
        return False
    if opens_mid_thought(sentences[0], language):
        return False
    # About this article, not the site's tagline: it shares a word with the title or the body.
    about = set(content_words(f"{article.title}\n{article.text[:3000]}", language))
    return not about or bool(about & set(content_words(summary, language)))


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


def _score(sentences: Sequence[str], language: str) -> tuple[list[float], list[dict[str, float]]]:
    """Each sentence's centrality (LexRank: PageRank with a uniform restart) and TF-IDF vector."""
    vectors = tfidf_vectors([content_words(s, language) for s in sentences])
    restart = [1.0 / len(sentences)] * len(sentences)
    return _pagerank(_similarity(vectors), restart), vectors


def _leads(sentences: Sequence[str], title: str, scores: Sequence[float], language: str) -> bool:
    """Whether the first sentence leads the summary: a lede that stands on its own, is about
    what the headline says (shares a content word with it, where there is one), and either
    represents the article (at least as central as the average sentence, LexRank's own
    baseline 1/n) or alone states something the headline announces ("fell 2%", "up 24%").

    A lede that is neither is a hook or a scene-setter: the most central sentences lead.
    Centrality alone is not enough the other way: a lede states what is new (the 2% fall),
    which the rest of the article does not repeat, so it is often not central at all."""
    first = sentences[0]
    if opens_mid_thought(first, language):
        return False
    headline = set(content_words(title, language))
    own = set(content_words(first, language))
    if headline and not headline & own:
        return False
    if scores[0] * len(sentences) >= 1.0:
        return True
    elsewhere = set().union(*(content_words(s, language) for s in sentences[1:]))
    return bool((headline & own) - elsewhere)


def _choose(
    sentences: Sequence[str],
    title: str,
    count: int,
    budget: int,
    language: str,
) -> list[int]:
    """Indexes of the sentences to show, in article order.

    The lede first when it leads (`_leads`); then the most central sentences that do not
    repeat one already chosen, each only where it can be read: a sentence that opens mid-thought
    only right after the sentence before it in the article. The first always (even alone over
    the budget); a later one that would overflow the budget is dropped, not replaced by one
    further down the ranking (a low-ranked short sentence beside the best reads worse).
    """
    scores, vectors = _score(sentences, language)
    ranked = sorted(range(len(sentences)), key=lambda i: (-scores[i], i))
    if _leads(sentences, title, scores, language):
        ranked.remove(0)
        ranked.insert(0, 0)
    chosen: list[int] = []
    used = 0
    for index in ranked:
        if len(chosen) == count:
            break
        if opens_mid_thought(sentences[index], language) and index - 1 not in chosen:
            continue
        if any(cosine(vectors[index], vectors[c]) > REDUNDANCY for c in chosen):
            continue
        length = len(sentences[index]) + (1 if chosen else 0)
        if chosen and used + length > budget:
            count -= 1  # does not fit: dropped, and its place is not given to a weaker one
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

    `language` is the newsletter's; the article's own is told from its words where they say
    it clearly (see `detect_language`), and sets the sentence rules, stop words and stemmer.
    The article's own summary is kept when it is good (whole sentences that open cleanly, not
    the title, not boilerplate); otherwise the lede when it stands on its own, then the most
    central sentences. When even the first sentence is longer than the budget, that one
    sentence is returned whole. Captions, bylines, datelines, calls to action, fragments under
    30 characters and unpunctuated lines are never chosen, and no summary opens mid-thought.
    """
    language = detect_language(article.text or article.summary or "", primary_language(language))
    if good_feed_summary(article, language):
        return _lead(split_sentences(article.summary or "", language), sentences, budget)
    candidates = _candidates(article, language)
    chosen = _choose(candidates, article.title, sentences, budget, language) if candidates else []
    if chosen:
        return Summary([candidates[i] for i in chosen])
    # A teaser with no usable body (or none that can open a summary): the source's summary,
    # even clipped, beats nothing.
    parts = [
        p for p in split_sentences(article.summary or "", language) if not _BOILERPLATE.search(p)
    ]
    return _lead(parts, sentences, budget)
