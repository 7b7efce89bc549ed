"""Settings: one widget per option of the typed settings model, grouped by section, applied atomically.

Options that extensions register (``on_ui_settings`` -> ``shared.opts.add_option``) follow in their own
sections (``#settings_<section id>``, components ``#setting_<key>``) and are saved by the same "Apply settings".

The page is generated from ``Options.model_fields`` (see :func:`modules.ui.fields.option_widget`), so a new
option shows up without UI code. "Apply settings" sends only the changed keys to ``settings.update_options``,
which validates them all before saving anything; an error names the key and nothing is half-applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from modules.core.errors import EaselError
from modules.core.settings import Options
from modules.ui.context import UiContext
from modules.ui.extension_ui import build_extension_settings, extension_option_default
from modules.ui.fields import OptionWidget, listed_choices, option_changes, option_widgets


def _default_of(key: str) -> Any:
    return extension_option_default(key)


@dataclass
class SettingsPage:
    components: dict[str, Any] = field(default_factory=dict)
    widgets: dict[str, OptionWidget] = field(default_factory=dict)
    status: Any = None
    apply: Any = None
    applied: Any = None  # the apply event, for steps that must follow a save
    extension_components: dict[str, Any] = field(default_factory=dict)  # extension option key -> component


def _component(widget: OptionWidget, value: Any, choices: list[str] | None) -> Any:
    elem_id = f"setting_page_{widget.key}"
    if widget.kind == "checkbox":
        return gr.Checkbox(bool(value), label=widget.label, elem_id=elem_id)
    if widget.kind == "dropdown":
        return gr.Dropdown(list(widget.choices), value=value, label=widget.label, elem_id=elem_id)
    if widget.kind == "multiselect":
        current = list(value or [])
        return gr.Dropdown(list(dict.fromkeys([*widget.choices, *(choices or []), *current])), value=current,
                           multiselect=True, allow_custom_value=True, label=widget.label, elem_id=elem_id)
    if widget.kind == "slider":
        return gr.Slider(widget.minimum, widget.maximum, value=value, step=widget.step, label=widget.label,
                         elem_id=elem_id)
    if widget.kind == "number":
        return gr.Number(value, label=widget.label, precision=0 if widget.integer else None,
                         minimum=widget.minimum, maximum=widget.maximum, elem_id=elem_id)
    if choices is not None:  # a free-text option whose values the page lists: pick one, or type another
        return gr.Dropdown(listed_choices(widget, choices, value), value="" if value is None else str(value),
                           allow_custom_value=True, label=widget.label, elem_id=elem_id)
    return gr.Textbox("" if value is None else str(value), label=widget.label, elem_id=elem_id)


def build_settings_page(ctx: UiContext, extension_names: list[str],
                        localizations: list[str] | None = None) -> SettingsPage:
    page = SettingsPage()
    current = ctx.options.model_dump()
    choices_for = {"quicksettings_list": list(Options.model_fields), "disabled_extensions": extension_names,
                   "face_restoration_model": ctx.face_restorer_names(),
                   "localization": ["None", *(localizations or [])]}
    with gr.Row():
        page.apply = gr.Button("Apply settings", variant="primary", elem_id="settings_submit")
        reload_btn = gr.Button("Reload from disk values", elem_id="settings_reload", size="sm")
    page.status = gr.Markdown("", elem_id="settings_result")
    with gr.Column(elem_id="settings"):
        for index, (section, widgets) in enumerate(option_widgets(Options).items()):
            with gr.Accordion(section, open=index == 0,
                              elem_id=f"settings_section_{section.lower().replace(' ', '_')}"):
                for widget in widgets:
                    page.widgets[widget.key] = widget
                    page.components[widget.key] = _component(widget, current.get(widget.key),
                                                              choices_for.get(widget.key))
        # options extensions registered (on_ui_settings -> shared.opts.add_option), in their A1111 sections
        page.extension_components = build_extension_settings(gr, lambda key: current.get(key, _default_of(key))
                                                             ).components

    key_of = {comp: key for key, comp in page.components.items()}
    extension_key_of = {comp: key for key, comp in page.extension_components.items()}

    def apply(values: dict[Any, Any]) -> str:
        by_key = {key_of[comp]: value for comp, value in values.items() if comp in key_of}
        changes = option_changes(page.widgets, by_key, ctx.options.model_dump())
        saved = ctx.options.model_dump()
        for comp, value in values.items():
            key = extension_key_of.get(comp)
            if key is not None and value != saved.get(key, _default_of(key)):
                changes[key] = value
        if not changes:
            return "Nothing changed."
        try:
            ctx.settings.update_options(changes)
        except EaselError as exc:
            return f"⚠️ Not saved: {exc.message}"
        return f"Saved {len(changes)} setting(s): " + ", ".join(f"`{key}`" for key in changes)

    page.applied = page.apply.click(apply, inputs={*page.components.values(), *page.extension_components.values()},
                                    outputs=page.status, show_progress="hidden")

    def reload_values() -> dict[Any, Any]:
        values = ctx.options.model_dump()
        updates = {comp: values.get(key) if page.widgets[key].kind != "textbox" else
                   ("" if values.get(key) is None else str(values.get(key))) for key, comp in page.components.items()}
        updates.update({comp: values.get(key, _default_of(key)) for key, comp in page.extension_components.items()})
        return updates

    reload_btn.click(reload_values, None, [*page.components.values(), *page.extension_components.values()],
                     show_progress="hidden")
    return page
