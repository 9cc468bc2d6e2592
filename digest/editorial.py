"""The editor's hand: pins and drops for the coming issue, and the lineup they shape.

A pick names an article by URL (or, for a file without one, by the path it was read from).
Picks wait for the next issue that is not yet frozen and are attached to it when it freezes
(pipeline.freeze), so the following week starts with none.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from digest.errors import DigestError
from digest.learning import learn
from digest.models import UNDATED, Window
from digest.render import read_note, render_note
from digest.selection import Ranking, Rules, article_keys, pick_key, rank, undated_candidate
from digest.settings import Settings
from digest.source_names import apply_names
from digest.store import Store

ACTIONS = ("pin", "drop")


class PickError(DigestError):
    """A pin, drop or unpin names nothing usable."""


@dataclass
class PickReport:
    """What `digest pin`, `digest drop` or `digest unpin` did."""

    key: str
    action: str  # "pin", "drop" or "unpin"
    before: str | None  # the pending action it replaced, if any
    known: bool  # whether a stored article has this URL or origin

    def line(self) -> str:
        """One line for the editor."""
        done = {"pin": "pinned", "drop": "dropped", "unpin": "no longer pinned or dropped"}
        text = f"{self.key}: {done[self.action]} for the next issue"
        if self.action == "unpin":
            text = f"{self.key}: {done['unpin']}"
        elif self.before and self.before != self.action:
            text += f" (was {done[self.before]})"
        if not self.known:
            text += "; no stored article has this URL yet"
        return text


@dataclass
class NoteReport:
    """What `digest note` did: the note waiting for the next issue now, and where from."""

    note: str | None
    source: Path | None = None
    cleared: bool = False

    def line(self) -> str:
        """One line for the editor (and the note itself when only shown)."""
        if self.note is None:
            return (
                "note for the next issue: cleared"
                if self.cleared
                else "no note for the next issue (write one with: digest note FILE.md)"
            )
        words = len(render_note(self.note).text.split())
        if self.source is not None:
            return (
                f"note for the next issue: {words} words from {self.source} "
                "(kept with the issue when it is sent)"
            )
        return f"note for the next issue ({words} words):\n{self.note.rstrip()}"


def set_note(store: Store, path: Path | None, *, clear: bool = False) -> NoteReport:
    """Keep the Markdown of `path` as the next issue's intro, forget it (`clear`), or show it."""
    if clear:
        store.set_next_note(None)
        return NoteReport(note=None, cleared=True)
    if path is None:
        return NoteReport(note=store.next_note())
    markdown = read_note(path)
    if not render_note(markdown).text.strip():
        raise DigestError(
            f"{path}: the note is empty",
            "write the intro in Markdown, or run 'digest note --clear' to have none",
        )
    store.set_next_note(markdown)
    return NoteReport(note=markdown, source=path)


def _key(value: str) -> str:
    key = pick_key(value)
    if not key:
        raise PickError("no URL given", "pass the article's URL, e.g. digest pin https://…")
    return key


def pick(store: Store, value: str, action: str) -> PickReport:
    """Pin or drop the article at URL `value` for the coming issue (the latest pick wins)."""
    if action not in ACTIONS:
        raise PickError(f"unknown action {action!r}", f"use one of: {', '.join(ACTIONS)}")
    key = _key(value)
    before = store.set_pick(key, action)
    return PickReport(key=key, action=action, before=before, known=store.article_known(key))


def unpick(store: Store, value: str) -> PickReport:
    """Forget the pending pin or drop of the article at URL `value`."""
    key = _key(value)
    before = store.remove_pick(key)
    if before is None:
        raise PickError(
            f"{key} is neither pinned nor dropped for the next issue",
            "see what is with 'digest pin --list'",
        )
    return PickReport(key=key, action="unpin", before=before, known=store.article_known(key))


def pending(store: Store) -> list[tuple[str, str]]:
    """(key, action) of the picks waiting for the next issue, oldest first."""
    return store.picks(None)


def rules_for(store: Store, settings: Settings, label: str) -> Rules:
    """The selection rules of the issue `label`: the settings and its picks.

    A frozen issue keeps the picks it froze with; a draft gets the pending ones. With
    [selection] learn_from_clicks, the clicks of every other sent issue teach the weights.
    """
    chosen = store.picks(label if store.issue_by_label(label) is not None else None)
    learned = None
    if settings.learn_from_clicks:
        learned = learn(store.shown_stories(before=label), settings.learned_weight_bounds)
    return Rules(
        learned=learned,
        cluster_threshold=settings.cluster_threshold,
        source_weights=dict(settings.source_weights),
        max_per_source=settings.max_per_source,
        max_per_section=settings.max_per_section,
        pins=frozenset(key for key, action in chosen if action == "pin"),
        drops=frozenset(key for key, action in chosen if action == "drop"),
    )


def rank_window(store: Store, settings: Settings, window: Window, top: int | None) -> Ranking:
    """Every story of the window, scored, with what became of it (`digest select --explain`).

    Articles without a trustworthy date (flagged "missing": their date is only when they were
    read) stay out unless pinned, or unless [selection] undated = "include"; they are listed
    last, verdict "undated", with how to pin them in.
    """
    rules = rules_for(store, settings, window.label)
    found = store.articles_between(window.since, window.until)
    apply_names(found, settings.source_names)  # a name set since the articles were read
    undated = []
    if settings.undated == "exclude":
        undated = [a for a in found if a.date_flag == UNDATED and not article_keys(a) & rules.pins]
        found = [a for a in found if a not in undated]
    ranking = rank(
        found,
        window,
        top=top or settings.top,
        sentences=settings.summary_sentences,
        budget=settings.summary_chars,
        language=settings.language,
        rules=rules,
    )
    # Listed last, so --explain says what was left out and how to bring it in.
    ranking.candidates.extend(undated_candidate(a) for a in undated)
    return ranking
