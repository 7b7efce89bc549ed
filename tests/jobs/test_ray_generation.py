"""Easel's own generation core on two real Ray workers: the same pixels as the in-process worker, stored the same way.

The services are the ones ``webui.py`` builds (over the embedded model, on the CPU); the workers are started the
way ``--workers`` starts them (``webui_worker``), inside the session's local Ray cluster.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modules.core.settings import REPO_ROOT, CmdFlags, Options, Settings
from modules.jobs import JobStatus
from modules.processing.image_store import read_infotext
from modules.processing.params import Txt2ImgParams

EMBEDDED = REPO_ROOT / "models" / "Stable-diffusion" / "easel-shapes-v1"

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(300),
              pytest.mark.skipif(not EMBEDDED.is_dir(), reason="the embedded model is not in models/")]


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_two_workers_give_the_in_process_pixels_and_store_outputs_like_a_local_run(ray_cluster, tmp_path):
    from modules.jobs import ray_workers
    from webui import build_services, warm_up
    from webui_worker import FACTORY, accept_remote_result, worker_arguments

    flags = CmdFlags(data_dir=tmp_path / "data", models_dir=REPO_ROOT / "models", use_cpu=True, precision="full")
    settings = Settings(flags, Options(sd_model_checkpoint="easel-shapes-v1"))
    services = build_services(settings)
    warm_up(services)
    payload = Txt2ImgParams(prompt="a red circle on a white background", steps=4, width=64, height=64, seed=1234,
                            sampler_name="Euler", save_images=True).model_dump(mode="json")
    results = settings.data_paths.job_results

    services.queue.start()
    local = services.queue.wait(services.queue.submit("txt2img", payload).id, timeout=120)
    services.queue.stop()
    assert local.status is JobStatus.SUCCEEDED, local.error

    workers = ray_workers.start_workers(2, FACTORY, worker_arguments(settings), accept=accept_remote_result(services),
                                        context=lambda: settings.options, prefix="gen")
    services.queue.set_workers(workers)
    try:
        for worker in workers:  # both warmed up before the jobs arrive, so each pulls one
            while not worker.wait_ready(5.0):
                pass
        services.queue.start()
        jobs = [services.queue.submit("txt2img", payload) for _ in range(2)]
        remote = [services.queue.wait(job.id, timeout=240) for job in jobs]
    finally:
        services.queue.stop()
        services.queue.close_workers()
        services.job_store.close()

    assert all(job.status is JobStatus.SUCCEEDED for job in remote), [job.error for job in remote]
    assert {job.worker for job in remote} == {"gen-0", "gen-1"}
    expected = _pixels(results / local.id / local.result["images"][0])
    for job in remote:
        image_path = results / job.id / job.result["images"][0]
        assert np.array_equal(_pixels(image_path), expected)
        infotext, _ = read_infotext(image_path.read_bytes())
        assert infotext == local.result["infotexts"][0]
        # the sample went through this process's image store: a real file under the outputs folder
        saved = [Path(path) for path in job.result["saved"]]
        assert saved and all(path.is_file() and path.is_relative_to(settings.data_paths.outputs) for path in saved)
        assert np.array_equal(_pixels(saved[0]), expected)
    assert len(services.image_store.list_outputs("txt2img")) == 3  # one local sample and two from the workers
