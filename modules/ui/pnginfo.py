"""PNG info: drop an image, read its generation parameters, send them to the Text or Image tab."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from modules.core.errors import EaselError
from modules.processing.image_metadata import read_infotext
from modules.ui.context import UiContext


@dataclass
class PngInfoTab:
    image: Any
    info_html: Any
    raw: Any
    to_txt2img: Any
    to_img2img: Any
    to_inpaint: Any
    to_extras: Any


def read_parameters(path: str | None) -> tuple[str | None, dict[str, Any]]:
    """(infotext, other metadata) of an image file; unreadable files give (None, {"error": ...})."""
    if not path:
        return None, {}
    try:
        return read_infotext(Path(path).read_bytes())
    except EaselError as exc:
        return None, {"error": exc.message}


def info_html(text: str | None, others: dict[str, Any]) -> str:
    parts = []
    if text:
        parts.append(f"<h4>parameters</h4><pre class='easel-infotext-text'>{html.escape(text)}</pre>")
    for key, value in others.items():
        parts.append(f"<h4>{html.escape(str(key))}</h4><pre>{html.escape(str(value))}</pre>")
    if not parts:
        return "<p>No generation parameters found in this image.</p>"
    return "".join(parts)


def build_pnginfo_tab(ctx: UiContext) -> PngInfoTab:
    with gr.Row():
        with gr.Column():
            image = gr.Image(label="Source", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                             elem_id="pnginfo_image", height=420)
        with gr.Column():
            info = gr.HTML("", elem_id="pnginfo_html_info")
            raw = gr.Textbox("", visible=False, elem_id="pnginfo_generation_info")
            with gr.Row():
                to_txt2img = gr.Button("Send to txt2img", elem_id="pnginfo_send_to_txt2img")
                to_img2img = gr.Button("Send to img2img", elem_id="pnginfo_send_to_img2img")
            with gr.Row():
                to_inpaint = gr.Button("Send to inpaint", elem_id="pnginfo_send_to_inpaint")
                to_extras = gr.Button("Send to extras", elem_id="pnginfo_send_to_extras")

    def on_image(path: str | None) -> tuple[str, str]:
        if not path:
            return "", ""
        text, others = read_parameters(path)
        return info_html(text, others), text or ""

    image.change(on_image, image, [info, raw], show_progress="hidden")
    return PngInfoTab(image, info, raw, to_txt2img, to_img2img, to_inpaint, to_extras)
