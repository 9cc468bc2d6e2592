"""Settings layering: defaults → digest.toml → DIGEST_* → flags, validated once."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.errors import SettingsError
from digest.settings import read_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "digest.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = read_settings(environ={})
    assert s.config_path is None
    assert s.database_url == f"sqlite:///{tmp_path / 'digest.db'}"
    assert s.backend == "outbox" and s.top == 10


def test_layers_later_wins(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[newsletter]\nname = "From file"\n[selection]\ntop = 5\n[delivery]\nbackend = "smtp"\n',
    )
    env = {"DIGEST_TOP": "7", "DIGEST_BASE_URL": "https://news.example.org"}
    s = read_settings(path, overrides={"backend": "sendgrid"}, environ=env)
    assert s.name == "From file"
    assert s.top == 7
    assert s.base_url == "https://news.example.org"
    assert s.backend == "sendgrid"
    assert s.database_url == f"sqlite:///{tmp_path / 'digest.db'}"


def test_paths_are_relative_to_the_config(tmp_path: Path) -> None:
    path = write(tmp_path, '[delivery]\noutbox = "out"\n')
    assert read_settings(path, environ={}).outbox == tmp_path / "out"


def test_api_key_comes_from_environment_and_is_not_shown(tmp_path: Path) -> None:
    s = read_settings(write(tmp_path, ""), environ={"SENDGRID_API_KEY": "SG.secret-key"})
    assert s.sendgrid_api_key == "SG.secret-key"
    assert "SG.secret-key" not in repr(s)


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ('[selection]\ntop = "many"\n', {}, "top must be int"),
        ('[delivery]\nbackend = "pigeon"\n', {}, "unknown sender backend 'pigeon'"),
        ('[newsletter]\ntimezone = "Mars/Olympus"\n', {}, "unknown time zone"),
        ('[newsletter]\nnmae = "x"\n', {}, "unknown setting [newsletter] nmae"),
        ("[newsletter\n", {}, "digest.toml"),
        ("", {"DIGEST_TOP": "0"}, "top must be at least 1"),
        ("", {"DIGEST_BASE_URL": "news.example.com"}, "base_url must start with https://"),
        ("[sendgrid]\ntimeout = 0\n", {}, "sendgrid_timeout must be above 0"),
        ("", {"DIGEST_SMTP_TIMEOUT": "-5"}, "smtp_timeout must be above 0"),
        ("[sendgrid]\nasm_group_id = -5\n", {}, "asm_group_id must not be negative"),
    ],
)
def test_invalid_settings_say_where_and_how(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as info:
        read_settings(write(tmp_path, text), environ=env)
    assert message in info.value.message
    assert info.value.hint


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        read_settings(tmp_path / "nope.toml", environ={})
