"""Models: the checkpoint list (hash, family, size, loaded state), refresh, load, VAE choice; and the workers
that run jobs (the in-process one, or the Ray workers of ``--workers``/``--ray-address``) as
``GET /sdapi/v2/workers`` lists them.

Loading is a ``model_load`` job on the shared queue (the worker owns the device), so a load waits behind
running generations instead of racing them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from modules.core.errors import EaselError
from modules.services import Services
from modules.ui.context import UiContext
from modules.ui.progress import follow_job, progress_html

MODEL_LOAD_KIND = "load-model"
"""The API's runner kind for loading a checkpoint (payload ``{"checkpoint": title}``); registered here if absent."""
HEADERS = ["Title", "Hash", "Family", "Format", "Size (MB)", "Loaded"]
WORKER_HEADERS = ["Worker", "Node", "PID", "Device", "State", "Loaded models", "Free memory (MB)", "Jobs done",
                  "Current job"]


def model_rows(ctx: UiContext, *, refresh: bool = False) -> list[list[Any]]:
    catalog = ctx.services.catalog
    entries = catalog.refresh() if refresh else catalog.entries
    manager = ctx.services.manager
    current = manager.current.info.path if manager is not None and manager.current is not None else None
    return [[entry.title, entry.shorthash or "", entry.family or "", entry.format,
             round(entry.size_bytes / 2**20, 1), "✅ loaded" if entry.path == current else ""] for entry in entries]


def worker_rows(ctx: UiContext) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for info in ctx.queue.workers():
        free = info.description.free_memory
        rows.append([info.id, info.description.node, info.description.pid or "", info.description.device,
                     info.state.value, ", ".join(info.description.loaded_models),
                     round(free / 2**20) if free is not None else "", info.jobs_done, info.current_job or ""])
    return rows


def load_model_runner(services: Services) -> Any:
    """The queue runner for ``model_load`` jobs: load the named checkpoint and make it the default."""

    def run(job: Any, ctx: Any) -> dict[str, Any]:
        title = job.payload.get("checkpoint")
        loaded = services.require_manager().ensure_loaded(title)
        return {"model": loaded.info.title}

    return run


def build_models_tab(ctx: UiContext, quick_checkpoint: Any) -> None:
    with gr.Row():
        refresh = gr.Button("🔄 Refresh", elem_id="models_refresh", size="sm")
        choice = gr.Dropdown(ctx.checkpoint_titles(), value=ctx.current_checkpoint_title(), label="Checkpoint",
                             elem_id="models_checkpoint", allow_custom_value=True, scale=4)
        load = gr.Button("Load", variant="primary", elem_id="models_load", size="sm")
        vae = gr.Dropdown(ctx.vae_choices(), value=ctx.options.sd_vae, label="VAE", elem_id="models_vae",
                          allow_custom_value=True)
    status = gr.HTML("", elem_id="models_status")
    table = gr.Dataframe(model_rows(ctx), headers=HEADERS, interactive=False, elem_id="models_table")
    with gr.Accordion("Workers", open=False, elem_id="workers_panel"):
        workers_refresh = gr.Button("🔄 Refresh", elem_id="workers_refresh", size="sm")
        workers = gr.Dataframe(worker_rows(ctx), headers=WORKER_HEADERS, interactive=False, elem_id="workers_table")
    workers_refresh.click(lambda: worker_rows(ctx), None, workers, show_progress="hidden")

    def do_refresh() -> tuple[Any, Any, Any]:
        rows = model_rows(ctx, refresh=True)
        titles = [row[0] for row in rows]
        return rows, gr.update(choices=titles), gr.update(choices=titles)

    refresh.click(do_refresh, None, [table, choice, quick_checkpoint], show_progress="hidden")

    def do_load(title: str | None) -> Iterator[tuple[Any, Any, Any]]:
        if not title:
            yield progress_html("Error: checkpoint: choose one first", 0.0), gr.update(), gr.update()
            return
        try:
            ctx.settings.update_options({"sd_model_checkpoint": title})
            job = ctx.queue.submit(MODEL_LOAD_KIND, {"checkpoint": title}, source="ui")
        except EaselError as exc:
            yield progress_html(f"Error: {exc.message}", 0.0), gr.update(), gr.update()
            return
        for update in follow_job(ctx.queue, job.id):
            text = update.text if update.finished else f"Loading {title}… ({update.text})"
            yield progress_html(text, update.fraction, status=update.status), gr.update(), gr.update()
        yield gr.update(), model_rows(ctx), gr.update(value=ctx.current_checkpoint_title())

    load.click(do_load, choice, [status, table, quick_checkpoint], show_progress="hidden", concurrency_limit=None)

    def set_vae(value: str | None) -> str:
        if not value or value == ctx.options.sd_vae:
            return ""
        try:
            ctx.settings.update_options({"sd_vae": value})
        except EaselError as exc:
            return f"⚠️ {exc.message}"
        return f"VAE set to {value}"

    vae.change(set_vae, vae, status, show_progress="hidden")
