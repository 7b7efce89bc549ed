"""Settings: flags/env/config.json merge, atomic save, corrupt config kept aside, A1111 null handling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modules.core.errors import UserInputError
from modules.core.settings import Options, Settings, parse_cmd_flags


def test_flags_precedence_and_defaults(tmp_path: Path) -> None:
    flags = parse_cmd_flags(["--port", "9001"], {"EASEL_PORT": "9002", "EASEL_LISTEN": "true"})
    assert flags.port == 9001 and flags.listen and flags.host == "0.0.0.0"
    assert parse_cmd_flags([]).host == "127.0.0.1"
    assert parse_cmd_flags([]).effective_port == 7860
    assert parse_cmd_flags(["--api-only"]).effective_port == 7861


def test_unknown_flag_is_a_clear_error() -> None:
    with pytest.raises(SystemExit, match="--frobnicate"):
        parse_cmd_flags(["--frobnicate"])


def test_options_saved_atomically_and_reloaded(tmp_path: Path) -> None:
    settings = Settings.load(["--data-dir", str(tmp_path)])
    settings.update_options({"samples_format": "JPG", "CLIP_stop_at_last_layers": 2, "some_a1111_only_key": 5})
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["samples_format"] == "jpg" and saved["CLIP_stop_at_last_layers"] == 2
    assert saved["some_a1111_only_key"] == 5
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    again = Settings.load(["--data-dir", str(tmp_path)])
    assert again.options.CLIP_stop_at_last_layers == 2


def test_bad_option_names_the_key(tmp_path: Path) -> None:
    settings = Settings.load(["--data-dir", str(tmp_path)])
    with pytest.raises(UserInputError) as info:
        settings.update_options({"jpeg_quality": 500})
    assert info.value.field == "jpeg_quality"
    with pytest.raises(UserInputError) as info:
        settings.update_options({"made_up_key": None})
    assert info.value.field == "made_up_key"
    assert settings.options.jpeg_quality == Options().jpeg_quality


def test_corrupt_config_is_kept_aside_not_lost(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{ not json")
    settings = Settings.load(["--data-dir", str(tmp_path)])
    assert settings.options == Options()
    assert settings.load_warnings and "kept as" in settings.load_warnings[0]
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("config.json.corrupt-")]
    assert len(aside) == 1 and aside[0].read_text() == "{ not json"
