"""The newsletter's nouns as plain data: Article, Story, Lineup, Issue, Subscriber."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

# The date_flag of an article that states no date of its own: its date is when it was read.
UNDATED = "missing"
# The date_flag of an article dated later than when it was read.
FUTURE = "future"


@dataclass
class Article:
    """One article as read from a source, before or after it is stored."""

    title: str
    text: str
    origin: str  # the file path or URL it was read from
    url: str | None = None
    source: str | None = None  # site or feed name
    published: datetime | None = None  # timezone-aware
    summary: str | None = None  # the source's own summary, plain text
    author: str | None = None
    image: str | None = None
    date_flag: str | None = None  # "missing" (fell back to another date) or "future"
    related: list[str] = field(default_factory=list)  # teaser headlines seen beside it
    section: str | None = None  # the source's section or topic, where it names one
    metrics: dict[str, float] = field(default_factory=dict)  # views, clicks, shares (imported)
    image_alt: str | None = None  # the image's own alt text or caption, where stated
    image_width: int | None = None  # the image's size in pixels, where stated
    image_height: int | None = None
    id: int | None = None
    # why it has no date of its own, as read (not stored): where an editor should look
    date_note: str | None = field(default=None, compare=False)


@dataclass
class Story:
    """One event in the lineup: a representative article and the others that covered it."""

    article: Article
    summary: str
    score: float
    also: list[Article] = field(default_factory=list)
    components: dict[str, float] = field(default_factory=dict)


@dataclass
class Window:
    """A half-open time range [since, until) and the label that names its issue."""

    since: datetime
    until: datetime
    label: str


@dataclass
class Lineup:
    """The ranked stories chosen for one window."""

    window: Window
    stories: list[Story]


class SubscriberStatus(StrEnum):
    """Where a subscriber stands; only `active` ones receive issues."""

    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    PENDING = "pending"  # asked to join from the web; active once the emailed link is followed


@dataclass
class Subscriber:
    """A person on one or more lists."""

    email: str
    name: str = ""
    lists: list[str] = field(default_factory=list)
    status: SubscriberStatus = SubscriberStatus.ACTIVE
    fields: dict[str, str] = field(default_factory=dict)
    id: int | None = None
    topics: list[str] = field(default_factory=list)  # the [topics] they chose


@dataclass
class RenderedIssue:
    """An issue rendered once, with per-subscriber markers left to fill in."""

    subject: str
    preheader: str
    html: str
    text: str


@dataclass
class Variant:
    """One lineup of a personalized issue beside its general one, rendered once for all the
    readers whose topics give it."""

    number: int  # 1, 2, …; 0 is the issue's general lineup
    topics: list[str]  # the chosen topics whose stories it carries
    lineup: list[dict[str, object]]
    rendered: RenderedIssue
    topic_sets: list[str] = field(default_factory=list)  # subscribers.topics values it serves


@dataclass
class Issue:
    """One edition: its window, frozen lineup and rendered content."""

    id: int
    number: int
    label: str
    since: datetime
    until: datetime
    lineup: list[dict[str, object]]
    rendered: RenderedIssue
    created_at: datetime
    sent_at: datetime | None = None
    note: str = ""  # the editor's note (Markdown) it was rendered with
    variants: list[Variant] = field(default_factory=list)  # [selection] personalize
    # subscribers.topics values (topic sets) known when it froze whose readers get the
    # general lineup (their topics have no story this week)
    general_sets: list[str] = field(default_factory=list)
    shown: int = 0  # which variant this object carries (see `variant`); 0: the general one

    def variant(self, number: int) -> Issue:
        """The issue as the readers of variant `number` get it (0: itself)."""
        if number == 0:
            return self
        for found in self.variants:
            if found.number == number:
                cached = self.__dict__.setdefault("_variant_issues", {})
                if number not in cached:
                    cached[number] = Issue(
                        id=self.id,
                        number=self.number,
                        label=self.label,
                        since=self.since,
                        until=self.until,
                        lineup=found.lineup,
                        rendered=found.rendered,
                        created_at=self.created_at,
                        sent_at=self.sent_at,
                        note=self.note,
                        shown=number,
                    )
                issue: Issue = cached[number]
                return issue
        raise KeyError(number)

    def variant_of(self, topics_key: str | None) -> int:
        """The variant the readers who chose `topics_key` get (0 when none is theirs)."""
        if not topics_key or not self.variants:
            return 0
        by_set = self.__dict__.get("_by_set")
        if by_set is None:
            by_set = {key: v.number for v in self.variants for key in v.topic_sets}
            self.__dict__["_by_set"] = by_set
        return int(by_set.get(topics_key, 0))


class DeliveryStatus(StrEnum):
    """The ledger's states: pending → sending → sent | failed | unknown."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"
