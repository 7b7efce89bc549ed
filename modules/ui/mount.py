"""Build Easel's browser UI and mount it at ``/`` of the running FastAPI app.

Called by ``webui.start_background`` after the warm-up, i.e. after uvicorn has started: the app's lifespan has
already run, so gradio's own start-up (its event queue) is triggered here on the first request to the UI, from
inside the server's event loop. Client scripts and stylesheets (Easel's and each enabled extension's) are
written into the page's HTML ``<head>`` (:mod:`modules.ui.page`); extension files are served at ``/file=``
(:mod:`modules.ui.files`). Extension UI callbacks run while the page is built (:mod:`modules.ui.extension_ui`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from modules.core.paths import REPO_ROOT
from modules.services import Services

log = logging.getLogger(__name__)

CSS = """
#quicksettings { gap: 8px; align-items: end; }
.easel-tool { max-width: 44px; }
.easel-progress { margin: 4px 0 8px; }
.easel-bar { height: 8px; background: var(--neutral-200); border-radius: 4px; overflow: hidden; }
.easel-fill { height: 100%; background: var(--color-accent); transition: width .3s; }
.easel-progress-text { font-size: .9em; margin-top: 4px; min-height: 1.2em; }
.easel-error .easel-progress-text { color: #c0392b; font-weight: 600; }
.easel-infotext-text { white-space: pre-wrap; word-break: break-word; font-size: .85em; }
.easel-tokens { font-size: .8em; opacity: .7; }
.easel-warning { margin: 2px 0; color: #b9770e; }
.easel-script-hidden { display: none !important; }
"""


def extension_folders(services: Services) -> list[Path]:
    """The enabled extensions' folders in load order (as the scripts service found them)."""
    from modules.extensions.discovery import discover_extensions

    found = getattr(services.scripts, "extensions", None)
    if found is None:
        found = discover_extensions(extension_roots(services), services.settings.options.disabled_extensions)
    return [extension.path for extension in found if extension.enabled]


def extension_roots(services: Services) -> list[Path]:
    return list(services.extension_roots or [REPO_ROOT / "extensions"])


def build_blocks(services: Services) -> Any:
    """The whole page as a ``gr.Blocks`` (no server needed: also used by tests)."""
    import gradio as gr

    from modules.extensions import compat, gradio3
    from modules.extensions.a1111_ui import paste_bindings, publish_paste_fields, reset_paste_bindings, versions_html
    from modules.extensions.ui_pass import detached
    from modules.ui.context import UiContext
    from modules.ui.extension_ui import extension_tabs, install_component_hooks, render_extension_tab, scripts_current
    from modules.ui.extensions_tab import build_extensions_tab, installed_extensions
    from modules.ui.extras import build_extras_tab
    from modules.ui.generation import build_generation_tab, selected_file
    from modules.ui.history import build_history_tab
    from modules.ui.models_tab import build_models_tab
    from modules.ui.page import find_localizations
    from modules.ui.pnginfo import build_pnginfo_tab
    from modules.ui.quicksettings import build_quicksettings
    from modules.ui.settings_page import build_settings_page

    ctx = UiContext(services)
    gradio3.install()
    install_component_hooks()
    registry = compat.callbacks()
    registry.call("before_ui")
    reset_paste_bindings()
    with gr.Blocks(title="Easel", analytics_enabled=False) as blocks:
        quick = build_quicksettings(ctx)
        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab("Text", id="txt2img", elem_id="tab_txt2img"), scripts_current(ctx.scripts(False)):
                txt2img = build_generation_tab(ctx, "txt2img", quick)
            with gr.Tab("Image", id="img2img", elem_id="tab_img2img"), scripts_current(ctx.scripts(True)):
                img2img = build_generation_tab(ctx, "img2img", quick)
            # as in A1111, the on_ui_tabs callbacks run once the generation tabs exist (an extension tab may
            # wire its buttons to the prompts it finds in the paste fields), each in a Blocks of its own
            for kind, built in (("txt2img", txt2img), ("img2img", img2img)):
                publish_paste_fields(kind, built.a1111_paste_fields(),
                                     built.ui.get("init_img"), built.ui.get("override_settings_text"))
            with detached():
                ext_tabs = extension_tabs()
            with gr.Tab("Extras", id="extras", elem_id="tab_extras"):
                extras = build_extras_tab(ctx)
            with gr.Tab("PNG info", id="pnginfo", elem_id="tab_pnginfo"):
                pnginfo = build_pnginfo_tab(ctx)
            with gr.Tab("Models", id="models", elem_id="tab_models"):
                build_models_tab(ctx, quick.components["sd_model_checkpoint"])
            with gr.Tab("History", id="history", elem_id="tab_history"):
                history = build_history_tab(ctx)
            for ext_tab in ext_tabs:
                render_extension_tab(gr, ext_tab)
            with gr.Tab("Settings", id="settings", elem_id="tab_settings"):
                extension_names = [p.name for p in installed_extensions(ctx.extensions_root())]
                settings_page = build_settings_page(ctx, extension_names,
                                                    sorted(find_localizations(extension_folders(services))))
            with gr.Tab("Extensions", id="extensions", elem_id="tab_extensions"):
                build_extensions_tab(ctx)

        # A1111's footer: extensions read the release they run under from its first version link
        gr.HTML(f"<div class='versions'>{versions_html()}</div>", elem_id="footer")

        gradio3.hide_layouts_on_load(blocks)  # extension rows/columns made hidden stay hidden (Gradio 6 quirk)

        # -- sending images and parameters between tabs (A1111's "send to" buttons) --------------------------
        img_mode = img2img.ui["img2img_mode"]
        mode_tabs = img2img.ui["mode_tabs"]
        img2img_targets = [img2img.ui["init_img"], img2img.ui["inpaint"], img_mode, mode_tabs, tabs,
                           *img2img.paste_targets()]
        txt2img_targets = [tabs, *txt2img.paste_targets()]

        def to_image_tab(path: Any, infotext: str | None, mode: str) -> dict[Any, Any]:
            """``path``: a file path, or an image value as an extension's image component hands it over."""
            updates: dict[Any, Any] = {tabs: gr.Tabs(selected="img2img"), mode_tabs: gr.Tabs(selected=mode),
                                       img_mode: mode}
            if path is not None and not (isinstance(path, str) and not path):
                updates[img2img.ui["inpaint" if mode == "inpaint" else "init_img"]] = path
            updates.update(img2img.paste_updates(ctx, infotext))
            return updates

        for source in (txt2img, img2img):
            source.buttons["to_img2img"].click(
                lambda state, index: to_image_tab(*selected_file(state, index), "img2img"),
                [source.result_state, source.selected_state], img2img_targets, show_progress="hidden")
            source.buttons["to_inpaint"].click(
                lambda state, index: to_image_tab(*selected_file(state, index), "inpaint"),
                [source.result_state, source.selected_state], img2img_targets, show_progress="hidden")
            source.buttons["to_extras"].click(
                lambda state, index: {extras.image: selected_file(state, index)[0],
                                      tabs: gr.Tabs(selected="extras")},
                [source.result_state, source.selected_state], [extras.image, tabs], show_progress="hidden")

        def paste_to_txt2img(infotext: str | None) -> dict[Any, Any]:
            return {tabs: gr.Tabs(selected="txt2img"), **txt2img.paste_updates(ctx, infotext)}

        pnginfo.to_txt2img.click(paste_to_txt2img, pnginfo.raw, txt2img_targets, show_progress="hidden")
        pnginfo.to_img2img.click(lambda path, text: to_image_tab(path, text, "img2img"), [pnginfo.image, pnginfo.raw],
                                 img2img_targets, show_progress="hidden")
        pnginfo.to_inpaint.click(lambda path, text: to_image_tab(path, text, "inpaint"), [pnginfo.image, pnginfo.raw],
                                 img2img_targets, show_progress="hidden")
        pnginfo.to_extras.click(lambda path: {extras.image: path, tabs: gr.Tabs(selected="extras")}, pnginfo.image,
                                [extras.image, tabs], show_progress="hidden")
        history.reuse_txt2img.click(paste_to_txt2img, history.infotext, txt2img_targets, show_progress="hidden")
        history.reuse_img2img.click(lambda text: to_image_tab(None, text, "img2img"), history.infotext,
                                    img2img_targets, show_progress="hidden")

        # "send to <tab>" buttons of extensions (A1111's ParamBinding): the source image goes to the target tab's
        # image, the source infotext is pasted into its fields, and the target tab is shown
        results = {"txt2img": txt2img, "img2img": img2img}

        def send(tabname: str, image: Any, infotext: str | None) -> dict[Any, Any]:
            if tabname == "txt2img":
                return paste_to_txt2img(infotext)
            if tabname == "extras":
                updates: dict[Any, Any] = {tabs: gr.Tabs(selected="extras")}
                if image is not None:
                    updates[extras.image] = image
                return updates
            return to_image_tab(image, infotext, "inpaint" if tabname == "inpaint" else "img2img")

        targets = {"txt2img": txt2img_targets, "img2img": img2img_targets, "inpaint": img2img_targets,
                   "extras": [extras.image, tabs]}
        for binding in paste_bindings():
            connect_binding(gr, binding, targets, results, send)

        # keep the quick-settings bar in step with the settings page, and the browser's `opts` with both
        def sync_quick() -> dict[Any, Any]:
            options = ctx.options
            return {quick.components["sd_vae"]: options.sd_vae,
                    quick.components["CLIP_stop_at_last_layers"]: options.CLIP_stop_at_last_layers}

        settings_page.apply.click(sync_quick, None, [quick.components["sd_vae"],
                                                     quick.components["CLIP_stop_at_last_layers"]],
                                  show_progress="hidden")
        publish_options(ctx, [settings_page.applied, *quick.changed])
    blocks.queue(default_concurrency_limit=4)
    return blocks


def connect_binding(gr: Any, binding: Any, targets: dict[str, list[Any]], results: dict[str, Any],
                    send: Any) -> None:
    """Wire one extension "send to" button (A1111's ``ParamBinding``): its image and infotext sources, or the
    selected result of ``source_tabname``, go to ``binding.tabname`` through ``send(tab, image, infotext)``."""
    from gradio.context import get_blocks_context

    from modules.ui.generation import selected_file

    tabname = str(binding.tabname)
    if tabname not in targets or binding.paste_button is None:
        log.warning("extension 'send to %s' button not connected: Easel has no such tab", tabname)
        return
    in_page = get_blocks_context().blocks
    parts = [binding.paste_button, binding.source_image_component, binding.source_text_component]
    if any(part is not None and getattr(part, "_id", None) not in in_page for part in parts):
        log.warning("extension 'send to %s' button not connected: it is not in the page (its tab failed to build)",
                    tabname)
        return
    source = results.get(str(binding.source_tabname)) if binding.source_tabname else None
    if source is not None and binding.source_image_component is None and binding.source_text_component is None:
        inputs = [source.result_state, source.selected_state]

        def from_results(state: dict[str, Any], index: int) -> dict[Any, Any]:
            return send(tabname, *selected_file(state, index))

        handler: Any = from_results
    else:
        image_source, text_source = binding.source_image_component, binding.source_text_component
        inputs = [component for component in (image_source, text_source) if component is not None]

        def from_components(*values: Any) -> dict[Any, Any]:
            image = values[0] if image_source is not None else None
            text = values[-1] if text_source is not None else None
            return send(tabname, image, text if isinstance(text, str) else None)

        handler = from_components
    try:
        binding.paste_button.click(handler, inputs, targets[tabname], show_progress="hidden")
    except Exception as exc:  # not a component with events
        log.warning("extension 'send to %s' button not connected: %s", tabname, exc)


def publish_options(ctx: Any, changes: list[Any]) -> None:
    """After each settings change (``changes``: the events that save options), hand the options to the
    browser: its ``opts`` take the new values and the ``onOptionsChanged`` callbacks run."""
    import gradio as gr

    from modules.ui.extension_ui import options_json

    holder = gr.Textbox(visible=False, elem_id="settings_json")
    for change in changes:
        change.then(lambda: options_json(ctx.options), None, holder, show_progress="hidden", queue=False).then(
            None, holder, None, js="(values) => { window.easelSetOptions && window.easelSetOptions(values); }")


class _StartGradioOnFirstRequest:
    """ASGI wrapper: runs gradio's start-up (its event queue) once, inside the server loop, on the first request.

    Needed because the UI is mounted after uvicorn ran the app's lifespan, so gradio's lifespan hook never
    fires; gradio's own ``launch()`` solves the same problem with an HTTP call to itself.
    """

    def __init__(self, gradio_app: Any) -> None:
        self.gradio_app = gradio_app
        self.started = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not self.started and scope.get("type") in ("http", "websocket"):
            self.started = True
            blocks = self.gradio_app.get_blocks()
            if not getattr(blocks, "is_running", False):
                blocks.run_startup_events()
                await blocks.run_extra_startup_events()
            self.gradio_app.startup_events_triggered = True
        await self.gradio_app(scope, receive, send)


def _remove_root_routes(app: Any) -> None:
    """Drop plain routes at ``/`` (the "starting…" page) so the mounted UI answers there."""
    from starlette.routing import Mount

    app.router.routes[:] = [route for route in app.router.routes
                            if isinstance(route, Mount) or getattr(route, "path", None) != "/"]


def register_runners(services: Services) -> None:
    from modules.ui.models_tab import MODEL_LOAD_KIND, load_model_runner

    if MODEL_LOAD_KIND not in services.runners:
        services.register_runner(MODEL_LOAD_KIND, load_model_runner(services))


def mount_ui(app: Any, services: Services) -> None:
    """Build the Blocks and mount them at ``/`` of ``app`` (the FastAPI app that already serves the API)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr
    from starlette.routing import Mount

    from modules.extensions.ui_pass import UI_BUILD_LOCK, PageState
    from modules.ui.extension_ui import option_values
    from modules.ui.files import add_file_route, allowed_roots
    from modules.ui.page import HeadInjector, collect_assets, head_html

    register_runners(services)
    with UI_BUILD_LOCK:  # Gradio's build context is process-wide: no scripts runner pass meanwhile
        blocks = build_blocks(services)
        PageState.built = True  # the scripts have seen the page's components
    assets = collect_assets(extension_folders(services), services.settings.data_paths.root)
    roots = extension_roots(services)
    _remove_root_routes(app)
    add_file_route(app, lambda: [path for root in roots for path in allowed_roots(root)])
    gr.mount_gradio_app(app, blocks, path="/", css=CSS, footer_links=[], ssr_mode=False,
                        run_history=False, show_error=True)
    for route in reversed(app.router.routes):
        if isinstance(route, Mount) and route.path == "" and hasattr(route.app, "get_blocks"):
            route.app = HeadInjector(_StartGradioOnFirstRequest(route.app),  # type: ignore[assignment]
                                     lambda: head_html(assets, option_values(services.settings.options)))
            break
    log.info("browser UI mounted at /")
