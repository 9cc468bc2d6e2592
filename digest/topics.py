"""Topics readers choose ([topics] choices) and the lineup each set of them gets.

A topic names a section (`[newsletter] sections`, an article's section) or a source (its
display name). With `[selection] personalize = true` a reader's lineup is: the editor's pins,
then the best stories of their topics, up to `top`, filled from the general lineup (then the
rest of the ranking) when their topics are thin. A story is in a lineup once, whatever
section it is shown under. The lineup depends only on which of the reader's topics have a
story this week, so readers are grouped by that set, and each distinct lineup is one
variant, rendered once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from digest.errors import SubscriberError
from digest.models import Story
from digest.selection import Candidate, Ranking, source_name

SEPARATOR = ";"  # between topics in a CSV cell and in subscribers.topics


def match_topics(choices: Sequence[str], raw: Iterable[str]) -> tuple[list[str], list[str]]:
    """(the choices named in `raw`, as the settings spell them; the names that are none)."""
    by_fold = {choice.strip().casefold(): choice.strip() for choice in choices}
    found: list[str] = []
    unknown: list[str] = []
    for name in raw:
        name = name.strip()
        if not name:
            continue
        choice = by_fold.get(name.casefold())
        if choice is None:
            unknown.append(name)
        elif choice not in found:
            found.append(choice)
    return found, unknown


def parse_cell(choices: Sequence[str], cell: str, where: str) -> list[str]:
    """The topics of a CSV cell ("a;b"); SubscriberError naming an unknown one and the fix."""
    found, unknown = match_topics(choices, cell.split(SEPARATOR))
    if unknown:
        offered = ", ".join(choices) if choices else "none are declared"
        raise SubscriberError(
            f"{where}: unknown topic {unknown[0]!r} (choices: {offered})",
            "use a name from [topics] choices in digest.toml, separated by ';', or add it there",
        )
    return found


def topics_key(topics: Iterable[str]) -> str | None:
    """How a set of topics is stored (subscribers.topics): sorted case-insensitively and
    ";"-joined, so one set is one value whatever order it was chosen in; None for none."""
    unique = {t.strip().casefold(): t.strip() for t in topics if t.strip()}
    if not unique:
        return None
    return SEPARATOR.join(unique[k] for k in sorted(unique))


def key_topics(key: str | None) -> list[str]:
    """The topics of a stored key."""
    return [t for t in (key or "").split(SEPARATOR) if t]


def story_topics(story: Story, choices: Sequence[str]) -> list[str]:
    """The choices a story belongs to: its section's, and each of its sources'."""
    names = set()
    for article in (story.article, *story.also):
        if article.section and article.section.strip():
            names.add(article.section.strip().casefold())
        names.add(source_name(article).casefold())
    return [c for c in choices if c.strip().casefold() in names]


@dataclass
class Pick:
    """One story of a reader's lineup and why it is there."""

    candidate: Candidate
    why: str  # "pinned by the editor", "your topic Technology", "from the general lineup"


@dataclass
class TopicRanking:
    """The general ranking with each story's topics, to make any reader's lineup from."""

    ranking: Ranking
    choices: tuple[str, ...]
    top: int
    topics_of: list[list[str]] = field(default_factory=list)  # per candidate
    summarized: set[int] = field(default_factory=set)  # id() of stories summarized for it

    @classmethod
    def of(cls, ranking: Ranking, choices: Sequence[str], top: int) -> TopicRanking:
        """Each candidate's topics, worked out once."""
        made = cls(ranking, tuple(choices), top)
        made.topics_of = [story_topics(c.story, choices) for c in ranking.candidates]
        return made

    def with_stories(self) -> set[str]:
        """The choices that have at least one story a reader could get this week."""
        found: set[str] = set()
        for candidate, topics in zip(self.ranking.candidates, self.topics_of, strict=True):
            if candidate.verdict != "dropped":
                found.update(topics)
        return found

    def effective(self, topics: Iterable[str]) -> tuple[str, ...]:
        """Of `topics`, those with a story this week, in the settings' order: what decides
        the lineup (a topic without a story changes nothing)."""
        have = self.with_stories()
        wanted = {t.casefold() for t in topics}
        return tuple(c for c in self.choices if c.casefold() in wanted and c in have)

    def lineup(self, topics: Iterable[str]) -> list[Pick]:
        """The lineup of a reader who chose `topics`: pins, their topics' best stories up to
        `top`, then the general lineup and the rest of the ranking; no story twice."""
        chosen = set(self.effective(topics))
        candidates = self.ranking.candidates
        picks: list[Pick] = []
        taken: set[int] = set()

        def take(index: int, why: str) -> None:
            taken.add(index)
            picks.append(Pick(candidates[index], why))

        for i, c in enumerate(candidates):
            if c.verdict == "pinned":
                take(i, "pinned by the editor")
        general = sorted(
            (i for i, c in enumerate(candidates) if c.rank is not None),
            key=lambda i: candidates[i].rank or 0,
        )
        if not chosen:  # no topic (with a story): today's lineup
            for i in general:
                if i not in taken:
                    take(i, "in the general lineup")
            return picks
        for i, c in enumerate(candidates):  # best first
            if len(picks) >= self.top:
                break
            mine = [t for t in self.topics_of[i] if t in chosen]
            if mine and i not in taken and c.verdict != "dropped":
                take(i, f"your topic {mine[0]}")
        rest = [i for i, c in enumerate(candidates) if c.rank is None and c.verdict != "dropped"]
        for i in [*general, *rest]:
            if len(picks) >= self.top:
                break
            if i not in taken:
                take(
                    i,
                    "from the general lineup (your topics had no more stories)"
                    if candidates[i].rank is not None
                    else "from the week's ranking (your topics had no more stories)",
                )
        return picks
