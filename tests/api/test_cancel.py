"""Cancel that always works: ``DELETE /sdapi/v2/jobs/{id}`` and ``/sdapi/v1/interrupt`` stop every built-in script
and every long stage of a generation within one unit of work.

Each request below would run for minutes if nothing stopped it; the test stops it once it is under way and
requires the final state well before that (the wait is a fraction of the job's natural length, not a speed
target). The time from the stop request to the final state is collected and printed at the end of the module
(``pytest -s``), the figure the security notes quote.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

import webui
from modules.processing.image_store import encode_base64
from tests.api.conftest import RunningServer, make_services, shutdown, start_server

LOOPS = 100_000  # loop counts and step counts that make every job below last minutes if it is not stopped
LOOPBACK_LOOPS = 10_000  # the loopback script's own cap
STEPS = 60
FINAL_WAIT = 30.0  # seconds; each job's natural length is far beyond this
LATENCIES: dict[str, float] = {}


@pytest.fixture(scope="module")
def easel(tmp_path_factory: pytest.TempPathFactory, tiny_models_dir: Path,
          single_threaded_torch: None) -> Iterator[RunningServer]:
    """A generation server of its own, started with ``--max-job-images`` raised so that the scripts may be asked
    for the endless loops an operator could allow (the default limit would refuse them before they start)."""
    services = make_services(tmp_path_factory.mktemp("cancel-data"), tiny_models_dir,
                             ["--max-job-images", str(10 * LOOPS)])
    app = webui.create_app(services)
    services.queue.start()
    running = start_server(services, app)
    webui.warm_up(services)
    assert services.startup_error is None and services.manager.current is not None, services.startup_error
    yield running
    shutdown(running)


@pytest.fixture(scope="module", autouse=True)
def report_latencies() -> Iterator[None]:
    yield
    if LATENCIES:
        worst = max(LATENCIES, key=LATENCIES.__getitem__)
        lines = [f"  {name}: {seconds * 1000:.0f} ms" for name, seconds in sorted(LATENCIES.items())]
        print("\ncancel -> final state:\n" + "\n".join(lines) + f"\nlongest: {worst} {LATENCIES[worst]:.3f} s")


def _init() -> str:
    return encode_base64(Image.new("RGB", (64, 64), (40, 90, 200)))


def _img2img(**fields: Any) -> dict[str, Any]:
    return {"type": "img2img", "params": {"prompt": "a blue square", "init_images": [_init()], "width": 64,
                                          "height": 64, "steps": 8, "denoising_strength": 0.9, **fields}}


def _txt2img(**fields: Any) -> dict[str, Any]:
    return {"type": "txt2img", "params": {"prompt": "a red circle", "width": 64, "height": 64, "steps": 8, **fields}}


SCRIPT_JOBS: dict[str, Callable[[], dict[str, Any]]] = {
    "loopback": lambda: _img2img(script_name="loopback", script_args=[LOOPBACK_LOOPS, 0.3, "Linear", "None"]),
    "x/y/z plot": lambda: _txt2img(script_name="x/y/z plot", script_args=[
        "Seed", f"1-{LOOPS}", None, "Nothing", "", None, "Nothing", "", None,
        True, True, False, False, False, False, False, 0, False]),
    "prompt matrix": lambda: _txt2img(prompt="a|red|green|blue|cat|dog|big|small|photo", script_name="prompt matrix",
                                      script_args=[False, False, "positive", "comma", 0]),
    "prompts from file or textbox": lambda: _txt2img(script_name="prompts from file or textbox", script_args=[
        False, False, "start", "\n".join(["a cat", "a dog"] * (LOOPS // 2))]),
    "sd upscale": lambda: _img2img(steps=STEPS, script_name="sd upscale", script_args=["", 0, "Lanczos", 4.0]),
    "outpainting mk2": lambda: _img2img(steps=STEPS * 10, script_name="outpainting mk2",
                                        script_args=["", 64, 8, ["left", "right"], 1.0, 0.05]),
    "poor man's outpainting": lambda: _img2img(steps=STEPS * 10, script_name="poor man's outpainting",
                                               script_args=[64, 4, 1, ["left", "right"]]),
}


def _submit(client: httpx.Client, body: dict[str, Any]) -> str:
    answer = client.post("/sdapi/v2/jobs", json=body)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def _wait_under_way(client: httpx.Client, job_id: str) -> None:
    """Until the job runs and has reported progress (so the stop lands inside its loop, not before it)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = client.get(f"/sdapi/v2/jobs/{job_id}").json()
        assert job["status"] in ("queued", "running"), job
        if job["status"] == "running" and (job["step"] or 0) >= 1:
            return
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never got under way")


def _wait_final(client: httpx.Client, job_id: str, since: float, name: str) -> dict[str, Any]:
    while time.monotonic() - since < FINAL_WAIT:
        job = client.get(f"/sdapi/v2/jobs/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            LATENCIES[name] = time.monotonic() - since
            return dict(job)
        time.sleep(0.01)
    client.delete(f"/sdapi/v2/jobs/{job_id}")  # do not leave a job of minutes in front of the next test
    raise AssertionError(f"{name}: job {job_id} still running {FINAL_WAIT} s after the stop request")


@pytest.mark.parametrize("script", sorted(SCRIPT_JOBS))
def test_delete_cancels_every_builtin_script(client: httpx.Client, script: str) -> None:
    job_id = _submit(client, SCRIPT_JOBS[script]())
    _wait_under_way(client, job_id)
    since = time.monotonic()
    answer = client.delete(f"/sdapi/v2/jobs/{job_id}")
    assert answer.status_code == 200, answer.text
    job = _wait_final(client, job_id, since, f"DELETE {script}")
    assert job["status"] == "cancelled", job


@pytest.mark.parametrize("script", ["loopback", "x/y/z plot", "prompts from file or textbox", "sd upscale"])
def test_interrupt_stops_every_looping_script_and_keeps_its_images(client: httpx.Client, script: str) -> None:
    job_id = _submit(client, SCRIPT_JOBS[script]())
    _wait_under_way(client, job_id)
    since = time.monotonic()
    assert client.post("/sdapi/v1/interrupt").status_code == 200
    job = _wait_final(client, job_id, since, f"interrupt {script}")
    assert job["status"] == "succeeded", job
    assert job["result"]["interrupted"] is True


# -- long stages: the stop request arrives as the stage starts, and no further unit of the stage runs ------------


class StageSpy:
    """Wraps ``module.name`` so that entering it stops the running job; counts the units of work (module calls)
    that complete after that."""

    def __init__(self, easel: RunningServer, monkeypatch: pytest.MonkeyPatch, module: Any, name: str,
                 stop: str) -> None:
        self.queue = easel.services.queue
        self.stopped_at: float | None = None
        self.units_after_stop = 0
        original = getattr(module, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if self.stopped_at is None:
                current = self.queue.current()
                assert current is not None
                self.stopped_at = time.monotonic()
                if stop == "cancel":
                    self.queue.cancel(current.id)
                else:
                    self.queue.interrupt()
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    def count_units(self, modules: list[Any]) -> None:
        def finished(module: Any, args: Any, output: Any) -> None:
            if self.stopped_at is not None:
                self.units_after_stop += 1

        self.handles = [module.register_forward_hook(finished) for module in modules]

    def close(self) -> None:
        for handle in getattr(self, "handles", []):
            handle.remove()


def _vae_blocks(vae: Any) -> list[Any]:
    return [*vae.encoder.down_blocks, vae.encoder.mid_block, *vae.decoder.up_blocks, vae.decoder.mid_block]


def _run_stage(easel: RunningServer, client: httpx.Client, spy: StageSpy, body: dict[str, Any], name: str
               ) -> dict[str, Any]:
    job_id = _submit(client, body)
    deadline = time.monotonic() + 120
    while spy.stopped_at is None:
        assert time.monotonic() < deadline, f"{name}: the stage never started"
        time.sleep(0.005)
    return _wait_final(client, job_id, spy.stopped_at, name)


@pytest.mark.parametrize("stop", ["cancel", "interrupt"])
def test_stop_inside_the_denoising_loop(easel: RunningServer, client: httpx.Client,
                                        monkeypatch: pytest.MonkeyPatch, stop: str) -> None:
    from modules.processing import engine

    spy = StageSpy(easel, monkeypatch, engine, "denoise", stop)
    unet = easel.services.manager.current.pipe.unet
    spy.count_units([unet])
    try:
        job = _run_stage(easel, client, spy, _txt2img(steps=STEPS * 10, n_iter=20), f"{stop} in denoise")
    finally:
        spy.close()
    assert spy.units_after_stop <= 1
    assert job["status"] == ("cancelled" if stop == "cancel" else "succeeded")


@pytest.mark.parametrize("stage", ["decode_latents", "encode_images"])
def test_cancel_inside_a_tiled_vae_pass(easel: RunningServer, client: httpx.Client,
                                        monkeypatch: pytest.MonkeyPatch, stage: str) -> None:
    from modules.processing import engine

    monkeypatch.setattr(engine, "VAE_TILE_ABOVE_PIXELS", 0)  # the tiny VAE's 32-pixel tiles: 9+ units per pass
    vae = easel.services.manager.current.pipe.vae
    spy = StageSpy(easel, monkeypatch, engine, stage, "cancel")
    spy.count_units(_vae_blocks(vae))
    try:
        body = _img2img(width=128, height=128, n_iter=20) if stage == "encode_images" else _txt2img(
            width=128, height=128, n_iter=20, steps=1)
        job = _run_stage(easel, client, spy, body, f"cancel in VAE {stage}")
    finally:
        spy.close()
    assert job["status"] == "cancelled"
    assert spy.units_after_stop == 0  # the check before each block stops it before the first one
    assert vae.use_tiling is False  # the per-call tiling was undone


def test_cancel_inside_the_hires_second_pass(easel: RunningServer, client: httpx.Client,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from modules.processing import hires

    spy = StageSpy(easel, monkeypatch, hires, "second_pass", "cancel")
    spy.count_units([easel.services.manager.current.pipe.unet])
    try:
        body = _txt2img(steps=2, n_iter=10, enable_hr=True, hr_scale=2, hr_second_pass_steps=STEPS * 10,
                        hr_upscaler="Latent", denoising_strength=0.7)
        job = _run_stage(easel, client, spy, body, "cancel in hires second pass")
    finally:
        spy.close()
    assert job["status"] == "cancelled"
    assert spy.units_after_stop <= 1
