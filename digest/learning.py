"""Learning from clicks (`[selection] learn_from_clicks`): which sources and sections readers
click more than their place in the issue explains, as a factor on `source_weight`.

A story high in an issue is clicked more whatever it is, so raw click-through mostly measures
position. The clicks of past issues are fitted to the examination model

    expected unique clicks of a story = copies sent × issue level × position effect
                                        × source factor × section factor

by alternating maximum likelihood (each factor in turn is the observed clicks over the clicks
expected from the others, a Poisson fit): the position curve and each issue's level come
from the data itself, across all stories. A source's factor is then its clicks over the
clicks expected of an average story at the same places.

Few issues say little, so each factor is shrunk toward 1 (the editor's weight as it is) by
empirical Bayes: each issue a source appeared in gives one estimate of its factor; their
spread within sources (how noisy one issue is) and the spread of the sources' means around 1
(how much sources really differ) give the share of a source's own estimate to keep, which
grows with the number of issues it came from. With no real difference between sources all
factors stay at 1. The product of the source and section factors is kept within
`[selection] learned_weight_bounds`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

from digest.store import Shown

ROUNDS = 200  # alternating passes at most; they stop once no factor moves by 1e-9
_SETTLED = 1e-9


@dataclass(frozen=True)
class Factor:
    """What the clicks say of one source or section."""

    weight: float  # the shrunk factor, 1 = as clicked as its places predict
    issues: int  # how many past issues it came from
    raw: float  # before shrinking: clicks over the clicks expected at its places


@dataclass(frozen=True)
class Learned:
    """The factors learned from past issues' clicks, by source and section (casefolded)."""

    sources: dict[str, Factor] = field(default_factory=dict)
    sections: dict[str, Factor] = field(default_factory=dict)
    bounds: tuple[float, float] = (0.5, 2.0)
    issues: int = 0  # past issues with clicks

    def weight(
        self, source: str, section: str | None
    ) -> tuple[float, Factor | None, Factor | None]:
        """The factor for a story of `source` in `section`, within the bounds, and its parts."""
        by_source = self.sources.get(source.casefold())
        by_section = self.sections.get(section.casefold()) if section else None
        product = (by_source.weight if by_source else 1.0) * (
            by_section.weight if by_section else 1.0
        )
        low, high = self.bounds
        return min(high, max(low, product)), by_source, by_section


def learn(shown: Sequence[Shown], bounds: tuple[float, float]) -> Learned:
    """The source and section factors that past issues' clicks support (see the module)."""
    rows = [s for s in shown if s.recipients > 0 and s.source]
    if not rows:
        return Learned(bounds=bounds)
    issue = [s.issue for s in rows]
    clicks = [float(s.unique_clicks) for s in rows]
    sent = [float(s.recipients) for s in rows]
    factors: dict[str, list[Hashable | None]] = {
        "issue": list(issue),
        "position": [s.position for s in rows],
        "source": [s.source.casefold() for s in rows],
        "section": [s.section.casefold() if s.section else None for s in rows],
    }
    values: dict[str, dict[Hashable, float]] = {
        name: {k: 1.0 for k in keys if k is not None} for name, keys in factors.items()
    }
    # Each row's current factor of each kind (1 where it has none), kept beside `values`.
    current = {name: [1.0] * len(rows) for name in factors}

    def expected(i: int, without: str) -> float:
        out = sent[i]
        for name, row in current.items():
            if name != without:
                out *= row[i]
        return out

    for _ in range(ROUNDS):
        moved = 0.0
        for name, keys in factors.items():
            observed: dict[Hashable, float] = defaultdict(float)
            exposure: dict[Hashable, float] = defaultdict(float)
            others = [c for other, c in current.items() if other != name]
            for i, key in enumerate(keys):
                if key is not None:
                    observed[key] += clicks[i]
                    product = sent[i]
                    for row in others:
                        product *= row[i]
                    exposure[key] += product
            fitted = {k: observed[k] / exposure[k] if exposure[k] else 1.0 for k in observed}
            if name in ("source", "section"):
                fitted = _centred(fitted)
            moved = max([moved, *(abs(fitted[k] - values[name][k]) for k in fitted)])
            values[name] = fitted
            current[name] = [1.0 if k is None else fitted[k] for k in keys]
        if moved < _SETTLED:
            break
    return Learned(
        sources=_shrunk(factors["source"], issue, clicks, lambda i: expected(i, "source")),
        sections=_shrunk(factors["section"], issue, clicks, lambda i: expected(i, "section")),
        bounds=bounds,
        issues=len(set(issue)),
    )


def _centred(fitted: dict[Hashable, float]) -> dict[Hashable, float]:
    """Factors scaled so that their geometric mean is 1: a typical source (each counted once,
    however often it was shown) keeps the editor's weight; the issue levels take up the
    scale. Sources never clicked (factor 0) stay out of the mean."""
    logs = [math.log(v) for v in fitted.values() if v > 0]
    if not logs:
        return fitted
    mean = math.exp(sum(logs) / len(logs))
    return {k: v / mean for k, v in fitted.items()}


def _shrunk(
    keys: Sequence[Hashable | None],
    issue: Sequence[str],
    clicks: Sequence[float],
    expected: Callable[[int], float],
) -> dict[str, Factor]:
    """Each key's factor shrunk toward 1 by empirical Bayes over its per-issue estimates.

    The factors' scale is free (the issue levels take it up): 1 is put where the keys'
    geometric mean lies, each key counted by how much of its own estimate it keeps (a source
    seen in one issue barely moves it, a well-observed one counts once, however often shown).
    """
    observed: dict[tuple[Hashable, str], float] = defaultdict(float)
    exposure: dict[tuple[Hashable, str], float] = defaultdict(float)
    for i, key in enumerate(keys):
        if key is not None:
            observed[key, issue[i]] += clicks[i]
            exposure[key, issue[i]] += expected(i)
    per_key: dict[Hashable, list[float]] = defaultdict(list)  # one estimate per issue
    seen: dict[Hashable, float] = defaultdict(float)
    expect: dict[Hashable, float] = defaultdict(float)
    for (key, when), count in observed.items():
        if exposure[key, when] > 0:
            per_key[key].append(count / exposure[key, when])
            seen[key] += count
            expect[key] += exposure[key, when]
    raw = {k: seen[k] / expect[k] for k in per_key}
    logs = {k: math.log(v) for k, v in raw.items() if v > 0}
    if not logs:
        return {}
    centre = math.exp(sum(logs.values()) / len(logs))
    for _ in range(ROUNDS):
        keep = _keep(per_key, centre)
        total = sum(keep[k] for k in logs)
        if not total:
            break
        moved = math.exp(sum(keep[k] * logs[k] for k in logs) / total)
        if abs(math.log(moved / centre)) < _SETTLED:
            break
        centre = moved
    keep = _keep(per_key, centre)
    return {
        str(k): Factor(
            weight=1.0 + (raw[k] / centre - 1.0) * keep[k],
            issues=len(per_key[k]),
            raw=raw[k] / centre,
        )
        for k in per_key
    }


def _keep(per_key: dict[Hashable, list[float]], centre: float) -> dict[Hashable, float]:
    """The share of its own estimate each key keeps (normal-normal empirical Bayes): the
    spread of the keys' means around 1 beyond their noise, over that plus their noise."""
    scaled = {k: [r / centre for r in v] for k, v in per_key.items()}
    means = {k: sum(v) / len(v) for k, v in scaled.items()}
    spread = sum(sum((r - means[k]) ** 2 for r in v) for k, v in scaled.items())
    freedom = sum(len(v) - 1 for v in scaled.values())
    if not freedom or len(scaled) < 2:
        return {k: 0.0 for k in scaled}  # nothing yet tells signal from noise
    noise = spread / freedom  # variance of one issue's estimate
    between = max(
        0.0, sum((m - 1.0) ** 2 - noise / len(scaled[k]) for k, m in means.items()) / len(means)
    )
    if noise == 0:
        return {k: 1.0 for k in scaled}
    return {k: between / (between + noise / len(v)) for k, v in scaled.items()}


def learned_line(components: dict[str, float]) -> str:
    """How `select --explain` shows a story's learned factor and where it came from."""
    issues = int(components.get("learned_issues", 0))
    section = int(components.get("learned_section_issues", 0))
    if not issues and not section:
        return "learned from clicks: ×1 (no clicks on this source in past issues yet)"
    came = f"source in {issues} past issue{'s' if issues != 1 else ''}"
    if section:
        came += f", section in {section}"
    return f"learned from clicks: ×{components['learned_weight']:.2f} ({came})"
