"""How long `digest` takes to start, beside a trivial click app in the same interpreter.

Each command runs as a fresh subprocess (`python -m digest …`, this work tree first on
`PYTHONPATH`), at least 5 times after one warm-up run; the median wall time is shown. The
baseline is a click group with one command and its `--help`, in the same venv and the same
run. `digest status` runs in a folder made by `digest init` (SQLite, nothing sent yet).

Goal (issue 10): `digest --help` within 2× the baseline, `digest status` under 0.3 s.

Usage: python bench/startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
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


def clean_env() -> dict[str, str]:
    """The environment without DIGEST_* settings, this tree first on the import path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def timed(argv: list[str], cwd: Path, env: dict[str, str], runs: int) -> float:
    """Median wall seconds of `runs` runs of argv, after one warm-up run."""
    subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    """Measure and print one line per command."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="Runs per command (at least 5).")
    args = parser.parse_args()
    runs = max(5, args.runs)
    env = clean_env()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        trivial = folder / "trivial.py"
        trivial.write_text(TRIVIAL, encoding="utf-8")
        init = [py, "-m", "digest", "init", "news"]
        subprocess.run(init, cwd=folder, env=env, check=True, capture_output=True)
        news = folder / "news"
        cases = [
            ("python -c pass", [py, "-c", "pass"], folder),
            ("trivial click app --help", [py, str(trivial), "--help"], folder),
            ("digest --help", [py, "-m", "digest", "--help"], folder),
            ("digest status", [py, "-m", "digest", "status"], news),
        ]
        results = {name: timed(argv, cwd, env, runs) for name, argv, cwd in cases}
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [f"load average: {load}; median of {runs} runs each"]
    lines += [f"{name:<28} {seconds * 1000:7.0f} ms" for name, seconds in results.items()]
    ratio = results["digest --help"] / results["trivial click app --help"]
    lines.append(f"digest --help / trivial --help: {ratio:.2f}× (goal ≤ 2×)")
    lines.append(f"digest status: {results['digest status']:.3f} s (goal < 0.3 s)")
    print("\n".join(lines))  # noqa: T201


if __name__ == "__main__":
    main()
