"""ControlNet as an always-visible script, so ``alwayson_scripts: {"controlnet": {"args": [unit, ...]}}`` names a
known script and UI forms can pass units positionally. The API's units are attached by the ControlNet service's
run customizer before processing (so a bad unit is a 422); ``process`` attaches units only when that did not
happen, e.g. for units coming from the UI's script arguments. The work is in ``modules.controlnet``."""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

import modules.scripts as scripts
from modules.controlnet.units import ControlNetUnit
from modules.extensions.script_args import ScriptArgs, argument_error

MAX_UNITS = 3


class ControlNetArgs(ScriptArgs):
    """One sd-webui-controlnet unit (a dict, or a unit object from the UI) per slot; null for an empty slot."""

    unit_0: Any = None
    unit_1: Any = None
    unit_2: Any = None

    @field_validator("unit_0", "unit_1", "unit_2", mode="before")
    @classmethod
    def _unit(cls, value: Any) -> Any:
        if isinstance(value, dict):
            ControlNetUnit.model_validate(value)  # types and ranges; the service reads the dict itself
        elif value is not None and not hasattr(value, "module"):
            raise ValueError(f"expected a ControlNet unit object, not {type(value).__name__}")
        return value


class Script(scripts.Script):
    sorting_priority = -10
    api_args = ControlNetArgs

    def check_args(self, args: Any, request: Any, limits: Any, init_sizes: list[tuple[int, int]]) -> None:
        for index, unit in enumerate((args.unit_0, args.unit_1, args.unit_2)):
            resolution = unit.get("processor_res", -1) if isinstance(unit, dict) else getattr(unit, "processor_res", -1)
            if isinstance(resolution, int) and resolution > limits.max_processor_res:
                raise argument_error("alwayson_scripts.controlnet.args", index, "processor_res",
                                     f"{resolution} asked; allowed: -1 (default) or 1..{limits.max_processor_res} "
                                     "(--max-processor-res)")

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
