"""The sample articles `digest init` writes, dated relative to the day it runs."""

from __future__ import annotations

import importlib.resources
from datetime import date, timedelta
from importlib.resources.abc import Traversable
from pathlib import Path

import jinja2

from digest.errors import TemplateError


def sample_files() -> Traversable:
    """The folder of sample article templates shipped with digest."""
    return importlib.resources.files("digest.templates") / "init" / "articles"


def write_samples(target_dir: Path, today: date, *, overwrite: bool = False) -> list[Path]:
    """Render every sample article into `target_dir`, dated relative to `today`.

    `{{ ago(n, fmt) }}` in a sample is the date n days before `today`, formatted with
    strftime `fmt` (default ISO). Existing files are kept unless `overwrite`; the paths
    written are returned.
    """

    def ago(days: int, fmt: str = "%Y-%m-%d") -> str:
        return (today - timedelta(days=days)).strftime(fmt)

    env = jinja2.Environment(
        autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    written: list[Path] = []
    for relative, template in _templates(sample_files()):
        target = target_dir / relative
        if target.exists() and not overwrite:
            continue
        try:
            text = env.from_string(template.read_text(encoding="utf-8")).render(ago=ago)
        except jinja2.TemplateError as e:
            raise TemplateError(
                f"sample article {relative}: {e}", "reinstall digest; its sample files are damaged"
            ) from e
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


def _templates(folder: Traversable, prefix: Path = Path()) -> list[tuple[Path, Traversable]]:
    """Every sample file under `folder`, with its path relative to it, by name."""
    found: list[tuple[Path, Traversable]] = []
    for item in sorted(folder.iterdir(), key=lambda t: t.name):
        if item.name.startswith((".", "__")):
            continue  # __init__.py, __pycache__ and hidden files are not samples
        if item.is_dir():
            found.extend(_templates(item, prefix / item.name))
        else:
            found.append((prefix / item.name, item))
    return found
