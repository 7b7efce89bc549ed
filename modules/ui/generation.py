"""The Text (txt2img) and Image (img2img / sketch / inpaint) tabs.

Every request field has exactly one named component (``GenerationTab.fields``: field name -> component); the
Generate handler receives ``{component: value}`` (gradio's set-style inputs), turns it into
``{field name: value}`` and builds the same pydantic request model that the API validates. Generation is a job
on the shared queue; the handler follows it (position, step/ETA, preview) and finally shows the gallery,
the infotext and the seed.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from modules.core.errors import EaselError
from modules.processing.infotext import REQUEST_FIELDS
from modules.processing.params import INPAINTING_FILL_MODES, RESIZE_MODES
from modules.ui.context import UiContext
from modules.ui.fields import (
    WIDTH_HEIGHT_PRESETS,
    build_params,
    image_to_base64,
    mask_from_layers,
    paste_infotext,
)
from modules.ui.progress import follow_job, progress_html
from modules.ui.quicksettings import QuickSettings, quicksetting_value
from modules.ui.scripts_ui import ScriptSection, build_script_section

log = logging.getLogger(__name__)

IMG2IMG_MODES = ("img2img", "sketch", "inpaint")


@dataclass
class GenerationTab:
    kind: str
    fields: dict[str, Any] = field(default_factory=dict)
    """Request field name -> component."""
    ui: dict[str, Any] = field(default_factory=dict)
    """UI-only named components: override box, init image widgets, image mode."""
    scripts: ScriptSection = field(default_factory=ScriptSection)
    quick: QuickSettings | None = None
    # results
    gallery: Any = None
    infotext: Any = None
    progress: Any = None
    preview: Any = None
    message: Any = None
    result_state: Any = None
    selected_state: Any = None
    generate: Any = None
    buttons: dict[str, Any] = field(default_factory=dict)

    @property
    def is_img2img(self) -> bool:
        return self.kind == "img2img"

    # -- paste -----------------------------------------------------------------------------------------------
    def a1111_paste_fields(self) -> list[tuple[Any, str, str]]:
        """``(component, infotext key, request field)`` for each of the tab's fields that an infotext fills,
        in A1111's order (prompt, negative prompt, ...): what extensions find in the page's paste fields."""
        return [(self.fields[name], key, name) for key, name in REQUEST_FIELDS.items() if name in self.fields]

    def paste_targets(self) -> list[Any]:
        targets = [*self.fields.values(), self.ui["override_settings_text"]]
        targets.extend(component for component, _key in self.scripts.infotext_fields if component not in targets)
        if self.quick is not None:
            targets.extend(self.quick.components.values())
        return targets

    def paste_updates(self, ctx: UiContext, text: str | None) -> dict[Any, Any]:
        """``{component: new value}`` for pasting an infotext into this tab (A1111 paste behaviour)."""
        if not text or not text.strip():
            return {}
        quick_keys = list(self.quick.components) if self.quick is not None else []
        pasted = paste_infotext(text, tab_fields=set(self.fields), quicksettings=quick_keys,
                                current_options=ctx.options.model_dump())
        updates: dict[Any, Any] = {}
        for name, value in pasted.fields.items():
            comp = self.fields[name]
            if name == "styles":
                value = [v for v in value if v in ctx.style_names()]
            updates[comp] = value
        if self.quick is not None:
            for key, value in pasted.quicksettings.items():
                widget_value = quicksetting_value(ctx, key, value)
                if widget_value is not None:
                    updates[self.quick.components[key]] = widget_value
        updates[self.ui["override_settings_text"]] = json.dumps(pasted.overrides) if pasted.overrides else ""
        if self.scripts.infotext_fields:
            updates.update(script_paste_values(self.scripts.infotext_fields, text))
        return updates


def script_paste_values(infotext_fields: list[tuple[Any, Any]], text: str) -> dict[Any, Any]:
    """A1111's paste into script controls: each ``(component, key)`` takes ``params[key]`` (or ``key(params)``
    when it is a function) converted to the type of the component's value; a missing key leaves it unchanged."""
    from modules.extensions.a1111_ui import parse_generation_parameters

    params = parse_generation_parameters(text)
    updates: dict[Any, Any] = {}
    for component, key in infotext_fields:
        try:
            value = key(params) if callable(key) else params.get(key)
        except Exception as exc:
            log.warning("a script's infotext field %r failed on paste: %s", key, exc)
            continue
        if value is None:
            continue
        if isinstance(value, dict) and value.get("__type__") == "update":
            updates[component] = value
            continue
        current = getattr(component, "value", None)
        try:
            if isinstance(current, bool):
                value = value if isinstance(value, bool) else str(value).strip() not in ("False", "false", "")
            elif isinstance(current, (int, float)):
                value = float(value)
            elif isinstance(current, str):
                value = str(value)
        except (TypeError, ValueError):
            continue
        updates[component] = value
    return updates


def _tool_button(label: str, elem_id: str) -> gr.Button:
    return gr.Button(label, elem_id=elem_id, size="sm", scale=0, min_width=40, elem_classes=["easel-tool"])


def build_generation_tab(ctx: UiContext, kind: str, quick: QuickSettings) -> GenerationTab:
    """Build one generation tab inside the current Blocks/Tab context."""
    tab = GenerationTab(kind=kind, quick=quick)
    is_img2img = kind == "img2img"
    f = tab.fields
    p = kind  # elem_id prefix, as A1111 names them (txt2img_prompt, img2img_seed, ...)

    with gr.Row(elem_id=f"{p}_toprow"):
        with gr.Column(scale=6):
            f["prompt"] = gr.Textbox(label="Prompt", lines=3, elem_id=f"{p}_prompt",
                                     placeholder="Prompt (Ctrl+Enter to generate)")
            prompt_tokens = gr.HTML("<span class='easel-tokens'>0/75</span>", elem_id=f"{p}_token_counter")
            f["negative_prompt"] = gr.Textbox(label="Negative prompt", lines=2, elem_id=f"{p}_neg_prompt")
            negative_tokens = gr.HTML("<span class='easel-tokens'>0/75</span>", elem_id=f"{p}_negative_token_counter")
        with gr.Column(scale=2, min_width=220):
            tab.generate = gr.Button("Generate", variant="primary", elem_id=f"{p}_generate",
                                     elem_classes=["easel-generate"])
            with gr.Row():
                interrupt = gr.Button("Interrupt", elem_id=f"{p}_interrupt", size="sm")
                skip = gr.Button("Skip", elem_id=f"{p}_skip", size="sm")
            with gr.Row(equal_height=True):
                f["styles"] = gr.Dropdown(ctx.style_names(), value=[], multiselect=True, label="Styles",
                                          elem_id=f"{p}_styles", scale=4)
                apply_style = _tool_button("📋", f"{p}_style_apply")
                save_style = _tool_button("💾", f"{p}_style_create")
            style_name = gr.Textbox(label="New style name", elem_id=f"{p}_style_name", visible=True,
                                    placeholder="name, then 💾 saves the prompts as a style")

    with gr.Row():
        with gr.Column(scale=1, min_width=360, elem_id=f"{p}_settings"):
            if is_img2img:
                _build_image_inputs(tab)
            with gr.Row():
                f["sampler_name"] = gr.Dropdown(ctx.sampler_names(), value=ctx.default_sampler(),
                                                label="Sampling method", elem_id=f"{p}_sampling")
                f["scheduler"] = gr.Dropdown(ctx.schedule_labels(), value="Automatic", label="Schedule type",
                                             elem_id=f"{p}_scheduler")
                f["steps"] = gr.Slider(1, 150, value=20, step=1, label="Sampling steps", elem_id=f"{p}_steps")
            with gr.Row(equal_height=True):
                with gr.Column(scale=4):
                    size = ctx.native_size()
                    f["width"] = gr.Slider(64, 2048, value=size, step=8, label="Width", elem_id=f"{p}_width")
                    f["height"] = gr.Slider(64, 2048, value=size, step=8, label="Height", elem_id=f"{p}_height")
                swap = _tool_button("⇅", f"{p}_res_switch_btn")
                preset = gr.Dropdown([f"{w}x{h}" for w, h in WIDTH_HEIGHT_PRESETS], value=None, label="Preset",
                                     elem_id=f"{p}_size_preset", scale=1, min_width=100)
            with gr.Row():
                f["n_iter"] = gr.Slider(1, 100, value=1, step=1, label="Batch count", elem_id=f"{p}_batch_count")
                f["batch_size"] = gr.Slider(1, 8, value=1, step=1, label="Batch size", elem_id=f"{p}_batch_size")
            f["cfg_scale"] = gr.Slider(1, 30, value=7, step=0.5, label="CFG Scale", elem_id=f"{p}_cfg_scale")
            if is_img2img:
                f["denoising_strength"] = gr.Slider(0, 1, value=0.75, step=0.01, label="Denoising strength",
                                                    elem_id=f"{p}_denoising_strength")
            with gr.Row(equal_height=True):
                f["seed"] = gr.Number(-1, label="Seed", precision=0, elem_id=f"{p}_seed", scale=4)
                random_seed = _tool_button("🎲", f"{p}_random_seed")
                reuse_seed = _tool_button("♻️", f"{p}_reuse_seed")
            with gr.Accordion("Variation seed", open=False, elem_id=f"{p}_subseed_accordion"), gr.Row():
                f["subseed"] = gr.Number(-1, label="Variation seed", precision=0, elem_id=f"{p}_subseed")
                f["subseed_strength"] = gr.Slider(0, 1, value=0, step=0.01, label="Variation strength",
                                                  elem_id=f"{p}_subseed_strength")
            f["clip_skip"] = gr.Slider(0, 12, value=0, step=1, label="Clip skip (0 = quick setting)",
                                       elem_id=f"{p}_clip_skip")
            # the model and CodeFormer weight are settings (face_restoration_model, code_former_weight), as in A1111
            f["restore_faces"] = gr.Checkbox(False, label="Restore faces", elem_id=f"{p}_restore_faces")
            if not is_img2img:
                with gr.Accordion("Hires. fix", open=False, elem_id=f"{p}_hr"):
                    f["enable_hr"] = gr.Checkbox(False, label="Enable hires. fix", elem_id=f"{p}_enable_hr")
                    with gr.Row():
                        f["hr_upscaler"] = gr.Dropdown(ctx.hires_upscalers(), value="Latent", label="Upscaler",
                                                       elem_id=f"{p}_hr_upscaler")
                        f["hr_second_pass_steps"] = gr.Slider(0, 150, value=0, step=1, label="Hires steps",
                                                              elem_id=f"{p}_hires_steps")
                        f["denoising_strength"] = gr.Slider(0, 1, value=0.7, step=0.01,
                                                            label="Denoising strength",
                                                            elem_id=f"{p}_denoising_strength")
                    with gr.Row():
                        f["hr_scale"] = gr.Slider(1, 4, value=2, step=0.05, label="Upscale by",
                                                  elem_id=f"{p}_hr_scale")
                        f["hr_resize_x"] = gr.Slider(0, 2048, value=0, step=8, label="Resize width to",
                                                     elem_id=f"{p}_hr_resize_x")
                        f["hr_resize_y"] = gr.Slider(0, 2048, value=0, step=8, label="Resize height to",
                                                     elem_id=f"{p}_hr_resize_y")
            with gr.Accordion("Override settings", open=False, elem_id=f"{p}_override_settings_accordion"):
                tab.ui["override_settings_text"] = gr.Textbox(
                    "", label="Override settings (JSON, filled by paste)", lines=1,
                    elem_id=f"{p}_override_settings")
            tab.scripts = build_script_section(ctx, is_img2img, p)

        with gr.Column(scale=1, min_width=360, elem_id=f"{p}_results"):
            tab.progress = gr.HTML(progress_html("", 0.0, status="idle"), elem_id=f"{p}_progress")
            tab.preview = gr.Image(label="Live preview", visible=False, interactive=False, height=256,
                                   elem_id=f"{p}_preview")
            tab.gallery = gr.Gallery(label="Output", columns=4, height=420, elem_id=f"{p}_gallery",
                                     interactive=False, format="png")
            with gr.Row(elem_id=f"image_buttons_{p}", elem_classes=["image-buttons"]):
                tab.buttons["save"] = gr.Button("💾 Save", size="sm", elem_id=f"{p}_save")
                tab.buttons["folder"] = gr.Button("📂 Folder", size="sm", elem_id=f"{p}_open_folder")
                tab.buttons["to_img2img"] = gr.Button("🖼️ → img2img", size="sm", elem_id=f"{p}_send_to_img2img")
                tab.buttons["to_inpaint"] = gr.Button("🎨 → inpaint", size="sm", elem_id=f"{p}_send_to_inpaint")
                tab.buttons["to_extras"] = gr.Button("📐 → extras", size="sm", elem_id=f"{p}_send_to_extras")
            tab.message = gr.Markdown("", elem_id=f"{p}_message")
            tab.infotext = gr.HTML("", elem_id=f"{p}_infotext", elem_classes=["easel-infotext"])
            # the last component of the results column in A1111: extensions anchor their UI on its elem_id
            gr.Button(visible=False, elem_id=f"{p}_generation_info_button")
            tab.result_state = gr.State({})
            tab.selected_state = gr.State(0)

    # -- small handlers ------------------------------------------------------------------------------------
    def count(text: str | None, is_positive: bool = True) -> str:
        tokens, limit = ctx.token_count(text or "", is_positive=is_positive)
        return f"<span class='easel-tokens'>{tokens}/{limit}</span>"

    f["prompt"].change(count, f["prompt"], prompt_tokens, show_progress="hidden", trigger_mode="always_last")
    f["negative_prompt"].change(lambda text: count(text, is_positive=False), f["negative_prompt"], negative_tokens,
                                show_progress="hidden", trigger_mode="always_last")
    swap.click(lambda w, h: (h, w), [f["width"], f["height"]], [f["width"], f["height"]], show_progress="hidden")

    def pick_preset(value: str | None) -> tuple[Any, Any]:
        if not value:
            return gr.update(), gr.update()
        width, height = (int(v) for v in value.split("x"))
        return width, height

    preset.change(pick_preset, preset, [f["width"], f["height"]], show_progress="hidden")
    random_seed.click(lambda: -1, None, f["seed"], show_progress="hidden")

    def reuse(result: dict[str, Any], index: int) -> Any:
        seeds = result.get("seeds") or []
        if not seeds:
            return gr.update()
        return seeds[min(index or 0, len(seeds) - 1)]

    reuse_seed.click(reuse, [tab.result_state, tab.selected_state], f["seed"], show_progress="hidden")

    def do_apply_style(prompt: str, negative: str, names: list[str]) -> tuple[str, str, list[str]]:
        new_prompt, new_negative = ctx.apply_styles(prompt, negative, list(names or []))
        return new_prompt, new_negative, []

    apply_style.click(do_apply_style, [f["prompt"], f["negative_prompt"], f["styles"]],
                      [f["prompt"], f["negative_prompt"], f["styles"]], show_progress="hidden")

    def do_save_style(name: str, prompt: str, negative: str) -> tuple[Any, str]:
        if not name or not name.strip():
            return gr.update(), "⚠️ style name: enter a name first"
        try:
            ctx.save_style(name.strip(), prompt, negative)
        except Exception as exc:
            return gr.update(), f"⚠️ style could not be saved: {exc}"
        return gr.update(choices=ctx.style_names()), f"Saved style {name.strip()!r}"

    save_style.click(do_save_style, [style_name, f["prompt"], f["negative_prompt"]], [f["styles"], tab.message],
                     show_progress="hidden")

    _wire_gallery_select(tab)
    _wire_generate(ctx, tab)
    _wire_control(ctx, tab, interrupt, skip)
    _wire_result_buttons(ctx, tab)
    return tab


def _wire_gallery_select(tab: GenerationTab) -> None:
    def selected(evt: gr.SelectData) -> int:
        return int(evt.index) if isinstance(evt.index, int) else 0

    tab.gallery.select(selected, None, tab.selected_state, show_progress="hidden")


def _build_image_inputs(tab: GenerationTab) -> None:
    p = tab.kind
    mode = gr.State("img2img")
    tab.ui["img2img_mode"] = mode
    with gr.Tabs(elem_id="mode_img2img") as modes:
        with gr.Tab("img2img", id="img2img", elem_id="img2img_img2img_tab") as t_img:
            tab.ui["init_img"] = gr.Image(label="Image for img2img", type="pil", image_mode="RGBA",
                                          sources=["upload", "clipboard"], elem_id="img2img_image", height=360)
        with gr.Tab("Sketch", id="sketch", elem_id="img2img_img2img_sketch_tab") as t_sketch:
            tab.ui["sketch"] = gr.ImageEditor(label="Sketch", type="pil", sources=["upload", "clipboard"],
                                              elem_id="img2img_sketch", height=360)
        with gr.Tab("Inpaint", id="inpaint", elem_id="img2img_inpaint_tab") as t_inpaint:
            tab.ui["inpaint"] = gr.ImageEditor(
                label="Image for inpainting with mask", type="pil", sources=["upload", "clipboard"],
                elem_id="img2maskimg", height=360,
                brush=gr.Brush(colors=["#ffffff"], default_color="#ffffff", color_mode="fixed"))
    tab.ui["mode_tabs"] = modes
    for tab_obj, name in ((t_img, "img2img"), (t_sketch, "sketch"), (t_inpaint, "inpaint")):
        tab_obj.select(lambda name=name: name, None, mode, show_progress="hidden")
    f = tab.fields
    f["resize_mode"] = gr.Radio([(label, index) for index, label in enumerate(RESIZE_MODES)], value=0,
                                label="Resize mode", elem_id=f"{p}_resize_mode")
    with gr.Accordion("Inpaint options", open=False, elem_id=f"{p}_inpaint_controls"):
        with gr.Row():
            f["mask_blur"] = gr.Slider(0, 64, value=4, step=1, label="Mask blur", elem_id=f"{p}_mask_blur")
            f["inpainting_mask_invert"] = gr.Radio([("Inpaint masked", 0), ("Inpaint not masked", 1)], value=0,
                                                   label="Mask mode", elem_id=f"{p}_mask_mode")
        f["inpainting_fill"] = gr.Radio([(label, index) for index, label in enumerate(INPAINTING_FILL_MODES)],
                                        value=1, label="Masked content", elem_id=f"{p}_inpainting_fill")
        with gr.Row():
            f["inpaint_full_res"] = gr.Radio([("Whole picture", False), ("Only masked", True)], value=False,
                                             label="Inpaint area", elem_id=f"{p}_inpaint_full_res")
            f["inpaint_full_res_padding"] = gr.Slider(0, 256, value=32, step=4,
                                                      label="Only masked padding, pixels",
                                                      elem_id=f"{p}_inpaint_full_res_padding")


def image_payload(tab: GenerationTab, by_name: dict[str, Any]) -> dict[str, Any]:
    """``init_images`` (and ``mask``) from the active image mode's widget."""
    mode = by_name.get("img2img_mode") or "img2img"
    if mode == "img2img":
        image = by_name.get("init_img")
        if image is None:
            raise EaselError("init_images: upload an image to the img2img box first")
        return {"init_images": [image_to_base64(image.convert("RGB"))]}
    editor = by_name.get(mode) or {}
    background = editor.get("background") if isinstance(editor, dict) else None
    composite = editor.get("composite") if isinstance(editor, dict) else None
    if mode == "sketch":
        image = composite or background
        if image is None:
            raise EaselError("init_images: upload or draw an image in the Sketch box first")
        return {"init_images": [image_to_base64(image.convert("RGB"))]}
    if background is None:
        raise EaselError("init_images: upload an image to the Inpaint box first")
    mask = mask_from_layers(list(editor.get("layers") or []), background.size)
    if mask.getbbox() is None:
        raise EaselError("mask: paint the area to change over the image (the mask is empty)")
    return {"init_images": [image_to_base64(background.convert("RGB"))], "mask": image_to_base64(mask)}


def _wire_generate(ctx: UiContext, tab: GenerationTab) -> None:
    name_of = {comp: name for name, comp in tab.fields.items()}
    name_of.update({comp: name for name, comp in tab.ui.items() if name != "mode_tabs"})
    inputs = set(name_of) | set(tab.scripts.components)
    outputs = [tab.progress, tab.preview, tab.gallery, tab.infotext, tab.result_state, tab.message]

    def generate(values: dict[Any, Any], request: gr.Request) -> Iterator[dict[Any, Any]]:
        session = getattr(request, "session_hash", None) or "anonymous"
        by_name = {name_of[comp]: value for comp, value in values.items() if comp in name_of}
        try:
            extra: dict[str, Any] = dict(tab.scripts.collect(values))
            if tab.is_img2img:
                extra.update(image_payload(tab, by_name))
            ui_names = set(tab.ui)
            params = build_params(tab.kind, {k: v for k, v in by_name.items() if k not in ui_names - {
                "override_settings_text"}}, extra=extra)
            # the UI saves every image to the outputs folder (subject to the samples_save option), as A1111's does
            payload = params.model_copy(update={"save_images": True}).model_dump(mode="json")
            job = ctx.queue.submit(tab.kind, payload, source="ui")
        except EaselError as exc:
            yield {tab.progress: progress_html(f"Error: {exc.message}", 0.0), tab.message: ""}
            return
        ctx.remember_job(session, tab.kind, job.id)
        yield {tab.progress: progress_html("Queued…", 0.0, status="queued"), tab.message: "",
               tab.preview: gr.update(visible=False, value=None)}
        try:
            for update in follow_job(ctx.queue, job.id):
                if not update.finished:
                    out: dict[Any, Any] = {tab.progress: progress_html(update.text, update.fraction,
                                                                       status=update.status)}
                    if update.preview is not None:
                        out[tab.preview] = gr.update(visible=True, value=update.preview)
                    yield out
                    continue
                yield _final_outputs(ctx, tab, update)
        finally:
            ctx.remember_job(session, tab.kind, None)

    tab.generate.click(generate, inputs=inputs, outputs=outputs, concurrency_limit=None,
                       show_progress="hidden")


def _final_outputs(ctx: UiContext, tab: GenerationTab, update: Any) -> dict[Any, Any]:
    job = update.job
    out: dict[Any, Any] = {tab.progress: progress_html(update.text, 1.0, status=update.status),
                           tab.preview: gr.update(visible=False, value=None)}
    if job is None or job.status.value != "succeeded" or not job.result:
        return out
    result = job.result
    generation = ctx.services.generation
    files = [str(path) for path in generation.result_files(job.id, result)] if generation is not None else []
    infotexts = list(result.get("infotexts") or [])
    try:
        info = json.loads(result.get("info") or "{}")
    except ValueError:
        info = {}
    seeds = list(info.get("all_seeds") or ([info["seed"]] if "seed" in info else []))
    state = {"job_id": job.id, "kind": tab.kind, "files": files, "infotexts": infotexts, "seeds": seeds,
             "saved": list(result.get("saved") or [])}
    out[tab.gallery] = [(path, f"seed {seeds[i]}" if i < len(seeds) else None) for i, path in enumerate(files)]
    out[tab.infotext] = infotext_html(infotexts[0] if infotexts else "")
    out[tab.result_state] = state
    if result.get("warnings"):
        out[tab.message] = "⚠️ " + "; ".join(str(w) for w in result["warnings"])
    return out


def infotext_html(text: str) -> str:
    if not text:
        return ""
    return f"<pre class='easel-infotext-text'>{html.escape(text)}</pre>"


def _wire_control(ctx: UiContext, tab: GenerationTab, interrupt: Any, skip: Any) -> None:
    def act(action: str, request: gr.Request) -> str:
        session = getattr(request, "session_hash", None) or "anonymous"
        job_id = ctx.job_of(session, tab.kind)
        if job_id is None:
            return "Nothing of yours is running."
        position = ctx.queue.position(job_id)
        if position is not None and position > 0:
            ctx.queue.cancel(job_id)
            return "Cancelled the queued job."
        current = ctx.queue.current()
        if current is None or current.id != job_id:
            return ""
        if action == "skip":
            ctx.queue.skip()
            return "Skipping the current image…"
        ctx.queue.interrupt()
        return "Interrupting…"

    def do_interrupt(request: gr.Request) -> str:
        return act("interrupt", request)

    def do_skip(request: gr.Request) -> str:
        return act("skip", request)

    interrupt.click(do_interrupt, None, tab.message, show_progress="hidden", concurrency_limit=None)
    skip.click(do_skip, None, tab.message, show_progress="hidden", concurrency_limit=None)


def selected_file(state: dict[str, Any], index: int | None) -> tuple[str | None, str | None]:
    """(path, infotext) of the selected gallery image of the last result."""
    files = state.get("files") or [] if state else []
    if not files:
        return None, None
    i = min(max(int(index or 0), 0), len(files) - 1)
    infotexts = state.get("infotexts") or []
    return files[i], (infotexts[i] if i < len(infotexts) else None)


def _wire_result_buttons(ctx: UiContext, tab: GenerationTab) -> None:
    def save(state: dict[str, Any], index: int) -> str:
        path, infotext = selected_file(state, index)
        if path is None:
            return "Nothing to save yet."
        saved = state.get("saved") or []
        i = min(int(index or 0), len(state["files"]) - 1)
        if i < len(saved) and saved[i]:
            return f"Already saved: `{saved[i]}`"
        with Image.open(path) as image:
            image.load()
            seeds = state.get("seeds") or []
            target = ctx.services.image_store.save(image, kind=tab.kind, infotext=infotext,
                                                   seed=seeds[i] if i < len(seeds) else None)
        return f"Saved: `{target}`"

    def folder(state: dict[str, Any], index: int) -> str:
        saved = (state or {}).get("saved") or []
        if saved:
            return f"Folder: `{Path(saved[min(int(index or 0), len(saved) - 1)]).parent}`"
        return f"Folder: `{ctx.services.image_store.kind_dir(tab.kind)}`"

    tab.buttons["save"].click(save, [tab.result_state, tab.selected_state], tab.message, show_progress="hidden")
    tab.buttons["folder"].click(folder, [tab.result_state, tab.selected_state], tab.message, show_progress="hidden")
