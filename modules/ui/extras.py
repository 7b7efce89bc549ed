"""Extras: upscale and face-restore one image or a batch, as ``extras`` jobs on the shared queue.

The payload is A1111's ``/sdapi/v1/extra-single-image`` request (``image`` as base64 plus the upscaler and face
restoration fields), built as the API's own request model from the named components, so the same runner serves
the API and the UI; a batch is one job per image, each shown as it ends. The job's notes (a face model that is
not installed, no face found) are listed on a warning line under the result.
"""

from __future__ import annotations

import base64
import binascii
import html
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from modules.core.errors import EaselError
from modules.ui.context import UiContext
from modules.ui.fields import build_extras_params, extras_info_html, image_to_base64
from modules.ui.progress import follow_job, progress_html


@dataclass
class ExtrasTab:
    image: Any
    tabs: Any


def extras_payload(image: Image.Image, values: dict[str, Any]) -> dict[str, Any]:
    """The A1111 extra-single-image request for one image from the tab's named values, as the job payload."""
    return build_extras_params(values, image_to_base64(image.convert("RGB"))).model_dump(mode="json")


def notes_html(notes: list[str]) -> str:
    """The warning line under the result: one paragraph per note of the extras jobs."""
    return "".join(f"<p class='easel-warning'>⚠️ {html.escape(note)}</p>" for note in notes)


def extras_kind(ctx: UiContext) -> str:
    """``extras`` when an extension registered that runner, else the API's built-in fallback runner."""
    runners = ctx.services.runners
    return "extras" if "extras" in runners or "extras-builtin" not in runners else "extras-builtin"


def result_images(ctx: UiContext, job: Any) -> list[str | Image.Image]:
    """The result's images as paths (files under the job's folder, or absolute) or decoded base64."""
    images: list[str | Image.Image] = []
    folder = ctx.settings.data_paths.job_results / job.id
    for item in (job.result or {}).get("images", []):
        text = str(item)
        candidate = Path(text)
        if len(text) < 1024 and candidate.is_absolute() and candidate.is_file():
            images.append(text)
        elif len(text) < 1024 and (folder / text).is_file():
            images.append(str(folder / text))
        else:
            try:
                images.append(Image.open(io.BytesIO(base64.b64decode(text.split(",", 1)[-1]))))
            except (binascii.Error, ValueError, OSError):
                continue
    return images


def build_extras_tab(ctx: UiContext) -> ExtrasTab:
    upscalers = ctx.extras_upscalers()
    with gr.Row():
        with gr.Column():
            with gr.Tabs(elem_id="mode_extras") as tabs:
                with gr.Tab("Single Image", id="single", elem_id="extras_single_tab") as single_tab:
                    image = gr.Image(label="Source", type="pil", sources=["upload", "clipboard"],
                                     elem_id="extras_image", height=360)
                with gr.Tab("Batch Process", id="batch", elem_id="extras_batch_process_tab") as batch_tab:
                    batch = gr.File(label="Batch Process", file_count="multiple", file_types=["image"],
                                    elem_id="extras_image_batch")
            named: dict[str, Any] = {}
            named["resize_mode"] = gr.Radio([("Scale by", 0), ("Scale to", 1)], value=0, label="Resize",
                                            elem_id="extras_resize_mode")
            with gr.Row():
                named["upscaling_resize"] = gr.Slider(1, 8, value=2, step=0.05, label="Resize",
                                                      elem_id="extras_upscaling_resize")
                named["upscaling_resize_w"] = gr.Slider(64, 4096, value=512, step=8, label="Width",
                                                        elem_id="extras_upscaling_resize_w")
                named["upscaling_resize_h"] = gr.Slider(64, 4096, value=512, step=8, label="Height",
                                                        elem_id="extras_upscaling_resize_h")
                named["upscaling_crop"] = gr.Checkbox(True, label="Crop to fit", elem_id="extras_upscaling_crop")
            with gr.Row():
                named["upscaler_1"] = gr.Dropdown(upscalers, value=upscalers[1] if len(upscalers) > 1 else "None",
                                                  label="Upscaler 1", elem_id="extras_upscaler_1")
                named["upscaler_2"] = gr.Dropdown(upscalers, value="None", label="Upscaler 2",
                                                  elem_id="extras_upscaler_2")
                named["extras_upscaler_2_visibility"] = gr.Slider(0, 1, value=0, step=0.001,
                                                                  label="Upscaler 2 visibility",
                                                                  elem_id="extras_upscaler_2_visibility")
            with gr.Row():  # A1111's defaults: both restorers off, CodeFormer weight 0 (its strongest effect)
                named["gfpgan_visibility"] = gr.Slider(0, 1, value=0, step=0.001, label="GFPGAN visibility",
                                                       elem_id="extras_gfpgan_visibility")
                named["codeformer_visibility"] = gr.Slider(0, 1, value=0, step=0.001, label="CodeFormer visibility",
                                                           elem_id="extras_codeformer_visibility")
                named["codeformer_weight"] = gr.Slider(0, 1, value=0, step=0.001, label="CodeFormer weight",
                                                       info="0 = maximum effect, 1 = minimum effect",
                                                       elem_id="extras_codeformer_weight")
            run = gr.Button("Generate", variant="primary", elem_id="extras_generate")
        with gr.Column():
            progress = gr.HTML(progress_html("", 0.0, status="idle"), elem_id="extras_progress")
            gallery = gr.Gallery(label="Result", columns=3, height=420, elem_id="extras_gallery",
                                 interactive=False, format="png")
            with gr.Row(elem_id="image_buttons_extras", elem_classes=["image-buttons"]):
                folder = gr.Button("📂 Folder", size="sm", elem_id="extras_open_folder")
            message = gr.HTML("", elem_id="extras_message")
            info = gr.HTML("", elem_id="extras_html_info")

    name_of = {comp: name for name, comp in named.items()}
    mode = gr.State("single")
    single_tab.select(lambda: "single", None, mode, show_progress="hidden")
    batch_tab.select(lambda: "batch", None, mode, show_progress="hidden")
    inputs = set(name_of) | {image, batch, mode}

    def run_extras(values: dict[Any, Any]) -> Iterator[dict[Any, Any]]:
        by_name = {name_of[comp]: value for comp, value in values.items() if comp in name_of}
        sources: list[Image.Image] = []
        if values.get(mode) == "batch":
            for item in values.get(batch) or []:
                sources.append(Image.open(getattr(item, "name", item)))
        elif values.get(image) is not None:
            sources.append(values[image])
        if not sources:
            yield {progress: progress_html("Error: image: upload an image first", 0.0), message: ""}
            return
        shown: list[Any] = []
        infos: list[str] = []
        notes: list[str] = []
        for number, source in enumerate(sources, start=1):
            try:
                job = ctx.queue.submit(extras_kind(ctx), extras_payload(source, by_name), source="ui")
            except EaselError as exc:
                yield {progress: progress_html(f"Error: {exc.message}", 0.0), message: ""}
                return
            for update in follow_job(ctx.queue, job.id):
                label = f"[{number}/{len(sources)}] {update.text}" if len(sources) > 1 else update.text
                if not update.finished:
                    yield {progress: progress_html(label, update.fraction, status=update.status)}
                    continue
                if update.job is not None and update.job.status.value == "succeeded":
                    result = update.job.result or {}
                    shown.extend(result_images(ctx, update.job))
                    job_notes = [str(note) for note in result.get("warnings") or []]
                    notes = list(dict.fromkeys([*notes, *job_notes]))  # a batch repeats the same note per image
                    html_info = extras_info_html(str(result.get("html_info") or ""), job_notes)
                    if html_info:
                        infos.append(html_info)
                yield {progress: progress_html(label, 1.0, status=update.status), gallery: list(shown),
                       info: "".join(infos), message: notes_html(notes)}

    folder.click(lambda: f"Folder: <code>{html.escape(str(ctx.services.image_store.kind_dir('extras')))}</code>",
                 None, message, show_progress="hidden")
    run.click(run_extras, inputs=inputs, outputs=[progress, gallery, info, message], concurrency_limit=None,
              show_progress="hidden")
    return ExtrasTab(image=image, tabs=tabs)
