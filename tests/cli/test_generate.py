"""The CLI writes a PNG whose infotext parses back to the request."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image

from modules.processing.image_metadata import read_infotext
from modules.processing.infotext import parse_infotext

REPO = Path(__file__).resolve().parents[2]


def test_cli_png_infotext_round_trip(tiny_models_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.png"
    completed = subprocess.run(
        [sys.executable, str(REPO / "cli" / "generate.py"), "a red circle", "-n", "blue", "--steps", "3",
         "--sampler", "DPM++ 2M Karras", "--cfg", "6.5", "--seed", "77", "--width", "64", "--height", "48",
         "--models-dir", str(tiny_models_dir), "--data-dir", str(tmp_path / "data"), "-o", str(out), "--use-cpu"],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert completed.returncode == 0, completed.stderr[-2000:]
    image = Image.open(out)
    assert image.size == (64, 48)
    text, _ = read_infotext(out.read_bytes())
    assert text is not None
    parsed = parse_infotext(text)
    assert parsed["Prompt"] == "a red circle"
    assert parsed["Negative prompt"] == "blue"
    assert parsed["Steps"] == 3
    assert parsed["Sampler"] == "DPM++ 2M"
    assert parsed["Schedule type"] == "Karras"
    assert parsed["CFG scale"] == 6.5
    assert parsed["Seed"] == 77
    assert (parsed["Size-1"], parsed["Size-2"]) == (64, 48)
    assert parsed["Model"] == "tiny-sd"


def test_cli_rejects_bad_size(tiny_models_dir: Path, tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, str(REPO / "cli" / "generate.py"), "x", "--width", "65", "--steps", "1",
         "--models-dir", str(tiny_models_dir), "--data-dir", str(tmp_path / "data"), "-o", str(tmp_path / "x.png")],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert completed.returncode == 2
    assert "width" in completed.stderr and "multiple of 8" in completed.stderr
