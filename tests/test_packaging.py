"""A plain (non-editable) install ships every module, the migrations, the built-in templates and
the init samples."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_templates_and_samples(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        cwd=tmp_path,
    )
    [wheel] = tmp_path.glob("digest-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        shipped_csv = archive.read("digest/templates/init/subscribers.csv")
    built_in = resources.files("digest.templates")
    expected = {
        "digest/templates/issue.mjml.j2",
        "digest/templates/issue.txt.j2",
        "digest/templates/init/digest.toml",
        "digest/templates/init/subscribers.csv",
    }
    expected |= {
        f"digest/templates/init/articles/{p.name}"
        for p in (built_in / "init" / "articles").iterdir()
        if p.is_file()
    }
    # Every module of the package, every migration and the templates of the packages' data.
    expected |= {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "digest").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    expected.add("digest/store/migrations/script.py.mako")
    assert expected - names == set()
    # The example file is shipped as content, not as a dangling link.
    assert shipped_csv == (ROOT / "subscribers.example.csv").read_bytes()
