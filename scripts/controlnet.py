"""ControlNet as an always-visible script, so ``alwayson_scripts: {"controlnet": {"args": [unit, ...]}}`` names a
known script and UI forms can pass units positionally. The API's units are attached by the ControlNet service's
run customizer before processing (so a bad unit is a 422); ``process`` attaches units only when that did not
happen, e.g. for units coming from the UI's script arguments. The work is in ``modules.controlnet``."""

from __future__ import annotations

from typing import Any

import modules.scripts as scripts

MAX_UNITS = 3


class Script(scripts.Script):
    sorting_priority = -10

    def title(self) -> str:
        return "ControlNet"

    def show(self, is_img2img: bool) -> Any:
        return scripts.AlwaysVisible

    def ui(self, is_img2img: bool) -> list:
        import gradio as gr

        return [gr.State(None) for _ in range(MAX_UNITS)]  # one unit dict per slot (sd-webui-controlnet keys)

    def process(self, p: Any, *units: Any) -> None:
        if p.control_provider is not None:  # units from the request's alwayson_scripts came first
            return
        given = [unit for unit in units if unit]
        if not given:
            return
        from modules.extensions.compat import bound

        service = bound().controlnet
        if service is None:
            raise RuntimeError("ControlNet is not installed in this Easel")
        service.attach(p, given, "controlnet")
