"""A ControlNet unit as the sd-webui-controlnet API sends it
(``alwayson_scripts: {"controlnet": {"args": [unit, ...]}}``), validated into one typed object."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, field_validator, model_validator

from modules.core.validation import StrictInput

CONTROL_MODES = ("Balanced", "My prompt is more important", "ControlNet is more important")
RESIZE_MODES = ("Just Resize", "Crop and Resize", "Resize and Fill")
DEFAULT_PROCESSOR_RES = 512
SCRIPT_TITLE = "controlnet"
MAX_PROCESSOR_RES = 16384
"""The schema's bound; the limit in force is ``--max-processor-res`` (checked before the work starts)."""


class ControlNetUnit(StrictInput):
    """Keys and defaults of sd-webui-controlnet's unit; ``-1`` thresholds/resolution mean "the default"."""

    model_config = ConfigDict(extra="ignore")

    enabled: bool = True
    module: str = "none"
    model: str = "None"
    weight: float = Field(1.0, ge=0.0, le=2.0)
    image: Any = None  # base64 string, or {"image": b64, "mask": b64}
    resize_mode: str = "Crop and Resize"
    low_vram: bool = False
    processor_res: int = Field(-1, ge=-1, le=MAX_PROCESSOR_RES)
    threshold_a: float = Field(-1, ge=-1, le=1024)
    threshold_b: float = Field(-1, ge=-1, le=1024)
    guidance_start: float = Field(0.0, ge=0.0, le=1.0)
    guidance_end: float = Field(1.0, ge=0.0, le=1.0)
    pixel_perfect: bool = False
    control_mode: str = "Balanced"

    @model_validator(mode="before")
    @classmethod
    def _legacy_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = {key: value for key, value in data.items() if value is not None}
            if "image" not in data and "input_image" in data:  # the older API name
                data["image"] = data["input_image"]
            if "lowvram" in data and "low_vram" not in data:
                data["low_vram"] = data["lowvram"]
        return data

    @field_validator("resize_mode", mode="before")
    @classmethod
    def _resize_mode(cls, value: Any) -> str:
        return _choice(value, RESIZE_MODES, {"Envelope (Outer Fit)": 2, "Scale to Fit (Inner Fit)": 1,
                                             "Inner Fit (Scale to Fit)": 1, "Outer Fit (Shrink to Fit)": 2})

    @field_validator("control_mode", mode="before")
    @classmethod
    def _control_mode(cls, value: Any) -> str:
        return _choice(value, CONTROL_MODES, {})

    @model_validator(mode="after")
    def _guidance_order(self) -> ControlNetUnit:
        if self.guidance_end < self.guidance_start:
            raise ValueError("guidance_end must not be below guidance_start")
        return self

    @property
    def resize_index(self) -> int:
        return RESIZE_MODES.index(self.resize_mode)

    @property
    def resolution(self) -> int:
        return self.processor_res if self.processor_res > 0 else DEFAULT_PROCESSOR_RES

    def image_data(self) -> str | None:
        image = self.image
        if isinstance(image, dict):
            image = image.get("image")
        return image or None

    def infotext(self) -> str:
        """sd-webui-controlnet's ``ControlNet N`` infotext value."""
        return (f"Module: {self.module}, Model: {self.model}, Weight: {_number(self.weight)}, "
                f"Resize Mode: {self.resize_mode}, Processor Res: {self.resolution}, "
                f"Threshold A: {_number(self.threshold_a)}, Threshold B: {_number(self.threshold_b)}, "
                f"Guidance Start: {_number(self.guidance_start)}, Guidance End: {_number(self.guidance_end)}, "
                f"Pixel Perfect: {self.pixel_perfect}, Control Mode: {self.control_mode}")


def _choice(value: Any, names: tuple[str, ...], extra: dict[str, int]) -> str:
    if isinstance(value, bool):
        raise ValueError(f"expected one of {', '.join(names)} or its index")
    if isinstance(value, int) and 0 <= value < len(names):
        return names[value]
    if isinstance(value, str):
        for name in names:
            if value.strip().lower() == name.lower():
                return name
        if value in extra:
            return names[extra[value]]
        if value.isdigit() and int(value) < len(names):
            return names[int(value)]
    raise ValueError(f"expected one of {', '.join(names)} (or 0..{len(names) - 1}), got {value!r}")


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(float(value), 4)


def units_from_alwayson(alwayson_scripts: dict[str, Any]) -> tuple[str | None, list[Any]]:
    """The raw ``args`` of the ControlNet entry (title matched case-insensitively), and its key."""
    for key, value in (alwayson_scripts or {}).items():
        if key.strip().lower() == SCRIPT_TITLE:
            args = value.get("args", []) if isinstance(value, dict) else value
            return key, list(args or [])
    return None, []
