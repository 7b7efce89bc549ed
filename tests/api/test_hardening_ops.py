"""Safe state and files: options that would break every later job are refused and not saved, a retention change
applies at once, result files are served only as regular files inside their folder, a non-UTF-8 ``styles.csv``
is read with a fallback, ``config.json`` keeps its valid keys, and pickle embeddings load without running code."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from modules.core.settings import load_options
from tests.api.conftest import RunningServer, small_txt2img


@pytest.mark.parametrize("name", ["evil.ckpt", "no-such-model"])
def test_options_refuse_a_checkpoint_that_would_fail_every_job(easel: RunningServer, client: httpx.Client,
                                                                name: str) -> None:
    folder = easel.services.catalog.folder
    (folder / "evil.ckpt").write_bytes(pickle.dumps({"state_dict": {}}))  # a pickle: refused without the flag
    config = easel.services.settings.data_paths.config_file
    before = config.read_bytes() if config.exists() else None
    try:
        answer = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": name, "samples_save": False})
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"][0]["loc"] == ["sd_model_checkpoint"]
        assert ("--allow-pickle" if name == "evil.ckpt" else "unknown checkpoint") in answer.json()["detail"]
        assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] != name
        assert (config.read_bytes() if config.exists() else None) == before  # nothing of the request was saved
        job = client.post("/sdapi/v1/txt2img", json=small_txt2img(override_settings={"sd_model_checkpoint": name}))
        assert job.status_code == 422 and "override_settings.sd_model_checkpoint" in job.text
    finally:
        (folder / "evil.ckpt").unlink()
        easel.services.catalog.refresh()


def test_job_retention_count_applies_at_once(easel: RunningServer, client: httpx.Client) -> None:
    store = easel.services.job_store
    previous = client.get("/sdapi/v1/options").json()["job_retention_count"]
    for seed in (1, 2, 3):
        assert client.post("/sdapi/v1/txt2img", json=small_txt2img(seed=seed, steps=1)).status_code == 200
    try:
        assert client.post("/sdapi/v1/options", json={"job_retention_count": 2}).status_code == 200
        assert store.retention_count == 2
        finished = client.get("/sdapi/v2/jobs", params={"status": "succeeded,failed,cancelled"}).json()
        assert finished["count"] == 2  # pruned by the change itself, before any further job ran
    finally:
        client.post("/sdapi/v1/options", json={"job_retention_count": previous})


def test_result_files_are_served_only_as_regular_files_inside_their_folder(easel: RunningServer,
                                                                            client: httpx.Client,
                                                                            tmp_path: Path) -> None:
    submitted = client.post("/sdapi/v2/jobs", json={"type": "txt2img", "params": small_txt2img(steps=1)}).json()
    job = easel.services.queue.wait(submitted["id"], timeout=120)
    url = f"/sdapi/v2/jobs/{job.id}/images/0"
    assert client.get(url).content[:8] == b"\x89PNG\r\n\x1a\n"
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the API")
    image = easel.services.settings.data_paths.job_results / job.id / job.result["images"][0]
    image.unlink()
    os.symlink(secret, image)  # a link planted in the data dir
    answer = client.get(url)
    assert answer.status_code == 404 and b"not for the API" not in answer.content
    folder = image.parent
    image.unlink()
    moved = tmp_path / "elsewhere"
    folder.rename(moved)
    (moved / image.name).write_bytes(b"\x89PNG outside")
    os.symlink(moved, folder)  # the job's folder itself linked out of the results folder
    assert client.get(url).status_code == 404


def test_a_non_utf8_styles_csv_is_read_with_a_fallback(easel: RunningServer, client: httpx.Client,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    styles = easel.services.settings.data_paths.styles_file
    saved = styles.read_bytes() if styles.exists() else None
    styles.write_bytes("name,prompt,negative_prompt\ncafé,\"{prompt}, crème\",brûlé\n".encode("cp1252"))
    try:
        listed = client.get("/sdapi/v1/prompt-styles")
        assert listed.status_code == 200
        assert listed.json() == [{"name": "café", "prompt": "{prompt}, crème", "negative_prompt": "brûlé"}]
        assert any(str(styles) in record.getMessage() and "not UTF-8" in record.getMessage()
                   for record in caplog.records)
        answer = client.post("/sdapi/v1/txt2img", json=small_txt2img(steps=1, styles=["café"]))
        assert answer.status_code == 200
        assert json.loads(answer.json()["info"])["all_prompts"][0] == "a red circle, crème"
    finally:
        if saved is None:
            styles.unlink()
        else:
            styles.write_bytes(saved)


def test_config_json_keeps_the_valid_keys_and_names_the_bad_one(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"samples_format": "jpg", "jpeg_quality": 5000, "job_retention_count": 7,
                                  "some_extension_key": "kept"}))
    options, warnings = load_options(config)
    assert options.samples_format == "jpg" and options.job_retention_count == 7
    assert (options.model_extra or {}).get("some_extension_key") == "kept"
    assert options.jpeg_quality != 5000
    assert len(warnings) == 1 and "'jpeg_quality'" in warnings[0] and "5000" in warnings[0]
    assert json.loads(config.read_text())["jpeg_quality"] == 5000  # the file is left for the user to fix


def test_pickle_embeddings_load_without_running_code(tmp_path: Path) -> None:
    from modules.extensions.networks import NetworksService

    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (Path.touch, (marker,))

    folder = tmp_path / "embeddings"
    folder.mkdir()
    torch.save({"string_to_param": {"*": torch.zeros(2, 32)}, "step": 5}, folder / "good.pt")
    torch.save({"string_to_param": {"*": torch.zeros(2, 32)}, "extra": Payload()}, folder / "evil.pt")
    service = NetworksService(tmp_path / "Lora", folder, allow_pickle=True)
    listed = service.refresh_embeddings()
    assert "good" in listed["loaded"] and listed["loaded"]["good"]["step"] == 5
    assert "evil" not in listed["loaded"] and "evil" not in listed["skipped"]
    assert not marker.exists()
