"""``cli/bench.py --unet`` on the embedded UNet: the report's shape and its arithmetic, at a tiny size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli import bench

EMBEDDED_UNET = Path(__file__).resolve().parents[2] / "models" / "Stable-diffusion" / "easel-shapes-v1" / "unet"


def test_flops_are_counted_and_grow_with_size() -> None:
    config = json.loads((EMBEDDED_UNET / "config.json").read_text())
    small, large = bench.unet_step_flops(config, 2, 64), bench.unet_step_flops(config, 2, 128)
    assert small > 0 and 3 * small < large < 8 * small  # ~4x pixels; the 77-token text projections stay fixed


def test_unet_bench_reports_ratios_peaks_and_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert bench.main(["--unet", "--unet-config", str(EMBEDDED_UNET), "--sizes", "64", "--backends", "plain",
                       "torch:fp32", "--reps", "2", "--threads", "1", "--peak-budget-s", "0.3",
                       "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == result
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_config(json.loads((EMBEDDED_UNET / "config.json").read_text()))
    params_m = sum(p.numel() for p in unet.parameters()) / 1e6
    assert result["unet_params_m"] == pytest.approx(params_m, abs=0.05) and result["threads"] == 1
    assert result["matmul_peak_gflops"]["fp32"] > 0 and result["matmul_peak_gflops"]["bf16"] > 0
    rows = result["sizes"]["64"]["rows"]
    assert rows["plain"]["ratio_vs_plain_fp32"] == 1.0 and len(rows["plain"]["times"]) == 2
    assert rows["torch:fp32"]["s_per_step"] > 0 and rows["torch:fp32"]["gflops"] > 0
    assert result["peak_rss_mib"] > 0 and "native_bf16" in result["cpu"]
    assert "| 64² | torch:fp32 |" in out.with_suffix(".md").read_text()


def test_pipeline_jobs_split_into_head_steps_and_tail_and_compose_to_longer_jobs() -> None:
    """``--pipeline`` times each job from its step callbacks: head (text encoder, step 1 with any calibration),
    later steps, tail (VAE decode); a 20-step job is composed as head + 19 x the median later step + tail."""
    times = bench._job_times([10.0, 12.0, 13.5, 15.5], started=4.0, finished=21.0)
    assert times == {"total_s": 17.0, "head_s": 6.0, "step_s": [2.0, 1.5, 2.0], "tail_s": 5.5}
    assert bench._composed(times, 20) == pytest.approx(6.0 + 19 * 2.0 + 5.5)
    assert bench._composed(times, 4) == pytest.approx(times["total_s"] + 0.5)  # median 2.0 vs the 1.5 measured


def test_memory_bench_measures_each_path_in_a_process_of_its_own(tmp_path: Path) -> None:
    """``cli/bench_memory.py``: every path gets a fresh process, so each peak is that path's own high-water mark."""
    from cli import bench_memory

    out = tmp_path / "memory.json"
    assert bench_memory.main(["--family", "sd15", "--channels", "32", "32", "64", "64", "--size", "64", "--steps", "1",
                              "--paths", "0", "1", "--threads", "1", "--cache-dir", str(tmp_path / "work"),
                              "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["paths"]
    assert [row["path"] for row in rows] == ["plain diffusers fp32", "torch fp32"]
    for row in rows:
        assert "error" not in row, row
        assert 0 < row["rss_start_mib"] < row["rss_after_load_mib"] <= row["peak_rss_mib"]
        assert len(row["jobs_s"]) == 1
    assert rows[1]["backend"] == "torch" and rows[1]["errors"] == []
    assert "| torch fp32 |" in out.with_suffix(".md").read_text()
