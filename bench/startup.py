"""How long `digest` takes to start, beside a trivial click app in the same interpreter.

Each command runs as a fresh subprocess (`python -m digest …`, this work tree first on
`PYTHONPATH`), at least 5 rounds after a warm-up round, the commands taking turns; the median
wall time is shown. The baseline is a click group with one command and its `--help`, in the
same venv and the same run. `digest status` runs in a newsletter folder (a small digest.toml, a
SQLite database made by the warm-up round, nothing sent yet). `--before DIR` times another
source tree of digest in the same rounds.

Goal (issue 10): `digest --help` within 2× the baseline, `digest status` under 0.3 s.

Usage: python bench/startup.py [--runs 7] [--before DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TRIVIAL = '''
import click

@click.group()
def cli():
    """A trivial click app."""

@cli.command()
def hello():
    """Say hello."""
    click.echo("hello")

cli()
'''


# The same for every tree timed (`digest init`'s file differs from one version to the next).
SETTINGS = """[newsletter]
name = "The Weekly Digest"
from_email = "news@example.com"
postal_address = "1 Harbour Street, Example Town"

[sources]
paths = ["articles"]
"""


def clean_env(tree: Path) -> dict[str, str]:
    """The environment without DIGEST_* settings, `tree` first on the import path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
    return env


Case = tuple[str, list[str], Path, dict[str, str]]


def timed(cases: list[Case], runs: int) -> dict[str, tuple[float, float]]:
    """Median wall and CPU (user + system) seconds of each case over `runs` rounds (the cases
    take turns within a round, so a change in the machine's load falls on all of them), after
    a warm-up round. CPU time varies less than wall time on a busy machine."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _, _ in cases}
    for round_ in range(runs + 1):
        for name, argv, cwd, env in cases:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True)
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            if round_:
                times[name].append((wall, cpu))
    return {
        name: (statistics.median(w for w, _ in pairs), statistics.median(c for _, c in pairs))
        for name, pairs in times.items()
    }


def main() -> None:
    """Measure and print one line per command."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="Runs per command (at least 5).")
    parser.add_argument(
        "--before",
        type=Path,
        help="Another digest source tree (e.g. `git archive main | tar -x -C DIR`) to time too.",
    )
    args = parser.parse_args()
    runs = max(5, args.runs)
    py = sys.executable
    trees = [("", ROOT)] + ([(" (before)", args.before.resolve())] if args.before else [])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        trivial = folder / "trivial.py"
        trivial.write_text(TRIVIAL, encoding="utf-8")
        env = clean_env(ROOT)
        cases: list[Case] = [
            ("python -c pass", [py, "-c", "pass"], folder, env),
            ("trivial click app --help", [py, str(trivial), "--help"], folder, env),
        ]
        for n, (suffix, tree) in enumerate(trees):
            env = clean_env(tree)
            news = folder / f"news{n}"  # the warm-up round makes its database
            news.mkdir()
            (news / "digest.toml").write_text(SETTINGS, encoding="utf-8")
            digest = [py, "-m", "digest"]
            cases.append((f"digest --help{suffix}", [*digest, "--help"], folder, env))
            cases.append((f"digest status{suffix}", [*digest, "status"], news, env))
        results = timed(cases, runs)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [f"load average: {load}; median of {runs} runs each"]
    lines.append(f"{'':<32} {'wall':>7} {'CPU':>9}")
    lines += [
        f"{name:<32} {wall * 1000:4.0f} ms {cpu * 1000:6.0f} ms"
        for name, (wall, cpu) in results.items()
    ]
    for kind, i in (("wall", 0), ("CPU", 1)):
        ratio = results["digest --help"][i] / results["trivial click app --help"][i]
        status = results["digest status"][i]
        lines.append(
            f"{kind}: digest --help / trivial --help {ratio:.2f}× (goal ≤ 2×); "
            f"digest status {status:.3f} s (goal < 0.3 s)"
        )
    print("\n".join(lines))  # noqa: T201


if __name__ == "__main__":
    main()
