"""A1111's UI helper names (``modules.ui``, ``modules.ui_common``) for drop-in extension UIs, on Gradio 6.

``modules.ui`` is Easel's UI package; these names resolve lazily from here so extension code that does
``from modules import ui; ui.create_refresh_button(...)`` or ``ui.versions_html()`` works.
"""

from __future__ import annotations

import html
import platform
import sys
from collections.abc import Callable
from typing import Any

refresh_symbol = "\U0001f504"  # 🔄
switch_values_symbol = "\U000021c5"  # ⇅
detect_image_size_symbol = "\U0001f4d0"  # 📐
paste_symbol = "\u2199\ufe0f"  # ↙
clear_prompt_symbol = "\U0001f5d1\ufe0f"  # 🗑️
restore_progress_symbol = "\U0001f300"  # 🌀
save_style_symbol = "\U0001f4be"  # 💾
apply_style_symbol = "\U0001f4cb"  # 📋
folder_symbol = "\U0001f4c2"  # 📂
up_down_symbol = "\u2195\ufe0f"  # ↕️


A1111_COMPATIBLE_VERSION = "v1.10.1"
"""The A1111 release whose extension contract Easel implements: extensions that read A1111's version from the
page footer (to choose between DOM layouts of different releases) find this one."""

txt2img_paste_fields: list[Any] = []
img2img_paste_fields: list[Any] = []
"""The generation tabs' paste fields (A1111's ``PasteField(component, infotext key, api=field)``), prompt first
and negative prompt second; filled when the page is built, before the ``on_ui_tabs`` callbacks run."""


def publish_paste_fields(tabname: str, fields: list[tuple[Any, str, str]], init_img: Any = None,
                         override_settings_component: Any = None) -> list[Any]:
    """Make a built generation tab's components reachable the way A1111's page does: in
    ``modules.infotext_utils.paste_fields[tabname]`` and as ``modules.ui.<tabname>_paste_fields``."""
    from modules import infotext_utils

    pasted = [infotext_utils.PasteField(component, key, api=api) for component, key, api in fields]
    infotext_utils.add_paste_fields(tabname, init_img, pasted, override_settings_component)
    globals()[f"{tabname}_paste_fields"] = pasted
    return pasted


def parse_generation_parameters(text: str) -> dict[str, Any]:
    """An infotext parsed as A1111's paste sees it (after the ``infotext_pasted`` callbacks)."""
    from modules import infotext_utils

    return infotext_utils.parse_generation_parameters(text)


def reset_paste_bindings() -> None:
    """Forget the paste fields and "send to" bindings of a previous build (A1111 does this as its UI starts)."""
    from modules import infotext_utils

    infotext_utils.reset()


def paste_bindings() -> list[Any]:
    """The "send to <tab>" buttons extensions registered (``infotext_utils.register_paste_params_button``)."""
    from modules import infotext_utils

    return list(infotext_utils.registered_param_bindings)


def gr_show(visible: bool = True) -> dict[str, Any]:
    return {"visible": visible, "__type__": "update"}


def plaintext_to_html(text: str, classname: str | None = None) -> str:
    content = "<br>\n".join(html.escape(line) for line in (text or "").split("\n"))
    return f"<p class='{classname}'>{content}</p>" if classname else f"<p>{content}</p>"


def versions_html() -> str:
    """The footer line A1111 shows: program and library versions."""
    import gradio

    try:
        import torch

        torch_version: str = str(torch.__version__)
    except ImportError:
        torch_version = "not installed"
    from modules.processing.run import EASEL_VERSION

    return (f"version: <a href=\"/docs\" title=\"A1111 release whose extension contract Easel implements\">"
            f"{A1111_COMPATIBLE_VERSION}</a>&#x2000;•&#x2000;easel: {html.escape(EASEL_VERSION)}"
            f"&#x2000;•&#x2000;python: {platform.python_version()}"
            f"&#x2000;•&#x2000;torch: {html.escape(torch_version)}&#x2000;•&#x2000;gradio: {gradio.__version__}"
            f"&#x2000;•&#x2000;platform: {html.escape(sys.platform)}")


def create_refresh_button(refresh_component: Any, refresh_method: Callable[[], Any],
                          refreshed_args: Any, elem_id: str) -> Any:
    """A 🔄 tool button that calls ``refresh_method`` and applies ``refreshed_args`` (a dict or a function
    returning one) to ``refresh_component`` (one component or a list)."""
    import gradio as gr

    from modules.ui_components import ToolButton

    components = refresh_component if isinstance(refresh_component, list) else [refresh_component]
    label = next((getattr(c, "label", None) for c in components if getattr(c, "label", None)), None)

    def refresh() -> Any:
        refresh_method()
        args = refreshed_args() if callable(refreshed_args) else refreshed_args
        for key, value in (args or {}).items():
            for component in components:
                setattr(component, key, value)
        updates = [gr.update(**(args or {})) for _ in components]
        return updates if len(updates) > 1 else updates[0]

    button = ToolButton(value=refresh_symbol, elem_id=elem_id, tooltip=f"{label}: refresh" if label else "Refresh")
    button.click(fn=refresh, inputs=[], outputs=components)
    return button


def setup_dialog(button_show: Any, dialog: Any, *, button_close: Any = None) -> None:
    """A1111 turns a column into a modal; Easel shows it in place and toggles its visibility."""
    import gradio as gr

    button_show.click(fn=lambda: gr.update(visible=True), outputs=[dialog])
    if button_close is not None:
        button_close.click(fn=lambda: gr.update(visible=False), outputs=[dialog])


def ordered_ui_categories() -> list[str]:
    return ["prompt", "image", "inpaint", "sampler", "accordions", "checkboxes", "dimensions", "cfg",
            "denoising", "seed", "batch", "override_settings", "scripts"]


def save_files(js_data: Any, images: Any, do_make_zip: bool, index: int) -> tuple[Any, str]:
    """A1111's "Save" button action: copy the chosen gallery images into the outputs' ``save`` folder."""
    import json

    from modules.extensions import compat
    from modules.infotext_utils import image_from_url_text

    data = json.loads(js_data) if isinstance(js_data, str) and js_data else (js_data or {})
    infotexts = data.get("infotexts", []) if isinstance(data, dict) else []
    chosen = list(images or [])
    if 0 <= index < len(chosen):
        chosen = [chosen[index]]
        infotexts = infotexts[index:index + 1] if index < len(infotexts) else infotexts[:1]
    store = compat.bound().image_store
    saved = []
    for position, item in enumerate(chosen):
        image = image_from_url_text(item)
        if image is None:
            continue
        text = infotexts[position] if position < len(infotexts) else None
        saved.append(str(store.save(image, kind="txt2img", infotext=text)))
    import gradio as gr

    return gr.update(value=saved or None, visible=bool(saved)), plaintext_to_html(f"Saved: {len(saved)} image(s)")


def update_generation_info(generation_info: str, html_info: str, img_index: int) -> tuple[str, str]:
    import json

    try:
        info = json.loads(generation_info)
        if 0 <= img_index < len(info.get("infotexts", [])):
            return plaintext_to_html(info["infotexts"][img_index]), gr_show(False)["visible"]
    except (ValueError, TypeError, AttributeError):
        pass
    return html_info, ""


def value(name: str) -> Any:
    found = globals().get(name)
    if found is None or name.startswith("_") or name in ("value", "annotations"):
        raise KeyError(name)
    return found
