"""A1111's ``modules.sd_samplers`` for drop-in extensions: the sampler list of Easel's sampler registry.

``samplers`` holds A1111's ``SamplerData`` tuples (``name``, ``constructor`` = None, ``aliases``, ``options``);
sampling itself runs in Easel's diffusers loop, so ``create_sampler`` is not available.
"""

from __future__ import annotations

from typing import Any

from modules.extensions import compat
from modules.extensions.a1111_models import SamplerData, sampler_data
from modules.extensions.incompatible import IncompatibleSurfaceError

__all__ = ["SamplerData", "find_sampler_config", "get_hr_sampler_and_scheduler", "get_sampler_and_scheduler",
           "set_samplers", "visible_sampler_names"]


def find_sampler_config(name: str | None) -> Any:
    if name is None:
        return sampler_data()[0] if sampler_data() else None
    for data in sampler_data():
        if name.lower() in (data.name.lower(), *(alias.lower() for alias in data.aliases)):
            return data
    return None


def visible_sampler_names() -> list[str]:
    hidden = set(compat.facade().settings.options.model_dump().get("hide_samplers") or [])
    return [data.name for data in sampler_data() if data.name not in hidden]


def get_sampler_and_scheduler(sampler_name: str | None, scheduler_name: str | None, *,
                              convert_automatic: bool = True) -> tuple[str, str]:
    """A1111 splits "DPM++ 2M Karras" into ("DPM++ 2M", "Karras"); Easel's registry does the same."""
    sampler, schedule = compat.facade().samplers.split_sampler_and_schedule(sampler_name, scheduler_name)
    return sampler, schedule


def get_hr_sampler_and_scheduler(p: Any) -> tuple[str, str]:
    sampler = getattr(p, "hr_sampler_name", None) or getattr(p, "sampler_name", None)
    scheduler = getattr(p, "hr_scheduler", None) or getattr(p, "scheduler", None)
    return get_sampler_and_scheduler(sampler, scheduler)


def set_samplers() -> None:
    """A1111 rebuilds its lists here; Easel's are read from the registry on each access."""


def create_sampler(name: str, model: Any) -> Any:
    from modules.extensions.incompatible import guard

    raise IncompatibleSurfaceError("modules.sd_samplers.create_sampler", "A1111's k-diffusion sampler objects",
                                   guard().importing_extension())


def __getattr__(name: str) -> Any:
    if name in ("samplers", "all_samplers", "samplers_for_img2img"):
        return sampler_data()
    if name in ("samplers_map", "all_samplers_map"):
        found: dict[str, str] = {}
        for data in sampler_data():
            found[data.name.lower()] = data.name
            for alias in data.aliases:
                found[alias.lower()] = data.name
        return found if name == "samplers_map" else {data.name: data for data in sampler_data()}
    raise AttributeError(f"module 'modules.sd_samplers' has no attribute {name!r}")
