"""The Models tab's workers panel: the queue's workers as ``GET /sdapi/v2/workers`` lists them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import webui
    from modules.core.settings import Settings

    root: Path = tmp_path_factory.mktemp("models-tab")
    settings = Settings.load(["--data-dir", str(root / "data"), "--models-dir", str(root / "models")], {})
    services = webui.build_services(settings)
    services.queue.set_workers([])  # replaced below by a worker whose runner needs no model
    try:
        yield services
    finally:
        services.queue.stop()
        services.job_store.close()


def test_workers_panel_shows_each_worker_with_state_and_jobs_done(services: Any) -> None:
    from modules.jobs import LocalWorker
    from modules.ui.context import UiContext
    from modules.ui.models_tab import worker_rows
    from modules.ui.mount import build_blocks

    services.queue.set_workers([LocalWorker(lambda job, ctx: {"ok": True}, device=lambda: "cpu (test)",
                                            models=lambda: ["easel-shapes-v1 [5a22a716b6]"])])
    blocks = build_blocks(services)
    page = {getattr(block, "elem_id", None): block for block in blocks.blocks.values()}
    table = page["workers_table"]
    assert table.value["headers"][:5] == ["Worker", "Node", "PID", "Device", "State"]
    assert [row[:1] + row[2:6] for row in table.value["data"]] == [
        ["local", os.getpid(), "cpu (test)", "starting", "easel-shapes-v1 [5a22a716b6]"]]

    services.queue.start()
    services.queue.wait(services.queue.submit("noop", {}).id, timeout=30)
    row = worker_rows(UiContext(services))[0]
    assert (row[4], row[7], row[8]) == ("idle", 1, "")
