"""History: saved outputs by date with their parameters; "reuse parameters" pastes them into a tab."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from modules.ui.context import UiContext
from modules.ui.generation import infotext_html

KINDS = ("all", "txt2img", "img2img", "extras")
MAX_SHOWN = 200


@dataclass
class HistoryTab:
    reuse_txt2img: Any
    reuse_img2img: Any
    infotext: Any
    state: Any


def history_entries(ctx: UiContext, kind: str = "all", date: str | None = None) -> list[dict[str, Any]]:
    """Newest first: ``{"path", "relative", "date", "kind", "infotext"}`` per saved image (at most 200)."""
    store = ctx.services.image_store
    entries = store.list_outputs(kind=None if kind in (None, "", "all") else kind,
                                 date=None if date in (None, "", "all") else date)
    return [{"path": str(entry.path), "relative": entry.relative, "date": entry.date, "kind": entry.kind,
             "infotext": entry.infotext or ""} for entry in entries[:MAX_SHOWN]]


def history_dates(ctx: UiContext) -> list[str]:
    return ["all", *sorted({entry.date for entry in ctx.services.image_store.list_outputs()}, reverse=True)]


def build_history_tab(ctx: UiContext) -> HistoryTab:
    with gr.Row():
        kind = gr.Dropdown(list(KINDS), value="all", label="Kind", elem_id="history_kind")
        date = gr.Dropdown(["all"], value="all", label="Date", elem_id="history_date", allow_custom_value=True)
        refresh = gr.Button("🔄 Refresh", elem_id="history_refresh", size="sm")
    with gr.Row():
        with gr.Column(scale=2):
            gallery = gr.Gallery(label="Outputs", columns=6, height=520, elem_id="history_gallery",
                                 interactive=False, format="png")
        with gr.Column(scale=1):
            path = gr.Markdown("", elem_id="history_path")
            info = gr.HTML("", elem_id="history_infotext")
            raw = gr.Textbox("", visible=False, elem_id="history_raw_infotext")
            with gr.Row():
                reuse_txt2img = gr.Button("♻️ Reuse in txt2img", elem_id="history_reuse_txt2img")
                reuse_img2img = gr.Button("♻️ Reuse in img2img", elem_id="history_reuse_img2img")
    state = gr.State([])

    def load(kind_value: str, date_value: str) -> tuple[Any, Any, list[dict[str, Any]]]:
        entries = history_entries(ctx, kind_value, date_value)
        items = [(entry["path"], f"{entry['date']} · {entry['kind']}") for entry in entries]
        return items, gr.update(choices=history_dates(ctx)), entries

    refresh.click(load, [kind, date], [gallery, date, state], show_progress="hidden")
    kind.change(load, [kind, date], [gallery, date, state], show_progress="hidden")
    date.input(load, [kind, date], [gallery, date, state], show_progress="hidden")

    def select(entries: list[dict[str, Any]], evt: gr.SelectData) -> tuple[str, str, str]:
        index = evt.index if isinstance(evt.index, int) else 0
        if not entries or index >= len(entries):
            return "", "", ""
        entry = entries[index]
        return f"`{entry['relative']}`", infotext_html(entry["infotext"]) or "<p>No parameters.</p>", entry["infotext"]

    gallery.select(select, state, [path, info, raw], show_progress="hidden")
    return HistoryTab(reuse_txt2img, reuse_img2img, raw, state)
