"""Generation parameters: the A1111 request model *is* the processing input.

Field names and defaults are A1111 v1.10.1's ``/sdapi/v1/txt2img`` and ``/img2img`` request fields (see
``docs/A1111-CONTRACT.md``), including its quirks: ``denoising_strength`` defaults to null
for txt2img, ``sampler_name`` may carry a schedule suffix ("DPM++ 2M Karras"), and explicit ``null`` for any
optional field means "use the default" (real clients send nulls). The API validates these models and the
processing core consumes them as they are; the UI builds the same objects from named components.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from modules.core.limits import Limits
from modules.core.validation import Seed, StrictInput

MAX_SIDE = 4096
MAX_PROMPT_CHARS = 65536


class GenerationParams(StrictInput):
    """Fields shared by txt2img and img2img."""

    model_config = ConfigDict(extra="ignore", validate_assignment=False, populate_by_name=True)

    prompt: str = Field("", max_length=MAX_PROMPT_CHARS)
    negative_prompt: str = Field("", max_length=MAX_PROMPT_CHARS)
    styles: list[str] = Field(default_factory=list)
    seed: Seed = -1
    subseed: Seed = -1
    subseed_strength: float = Field(0.0, ge=0.0, le=1.0)
    seed_resize_from_h: int = Field(-1, ge=-1, le=MAX_SIDE)
    seed_resize_from_w: int = Field(-1, ge=-1, le=MAX_SIDE)
    sampler_name: str | None = None
    scheduler: str | None = None
    batch_size: int = Field(1, ge=1, le=64)
    n_iter: int = Field(1, ge=1, le=1000)
    steps: int = Field(50, ge=1, le=1000)
    cfg_scale: float = Field(7.0, ge=0.0, le=100.0)
    width: int = Field(512, ge=8, le=MAX_SIDE)
    height: int = Field(512, ge=8, le=MAX_SIDE)
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: float | None = Field(None, ge=0.0, le=1.0)
    denoising_strength: float | None = Field(None, ge=0.0, le=1.0)
    s_min_uncond: float | None = Field(None, ge=0.0, le=100.0)
    s_churn: float | None = Field(None, ge=0.0, le=100.0)
    s_tmax: float | None = Field(None, ge=0.0, le=1000.0)
    s_tmin: float | None = Field(None, ge=0.0, le=1000.0)
    s_noise: float | None = Field(None, ge=0.0, le=2.0)
    override_settings: dict[str, Any] = Field(default_factory=dict)
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = Field(None, ge=0.0, le=1.0)
    disable_extra_networks: bool = False
    firstpass_image: str | None = None
    comments: dict[str, Any] | None = None
    clip_skip: int | None = Field(None, ge=1, le=12)
    # API extras
    sampler_index: str | int | None = "Euler"
    script_name: str | None = None
    script_args: list[Any] = Field(default_factory=list)
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    force_task_id: str | None = None
    infotext: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        """Explicit null for a field whose default is not null means "use the default" (as A1111 clients expect)."""
        if isinstance(data, dict):
            fields = cls.model_fields
            return {
                key: value
                for key, value in data.items()
                if not (value is None and key in fields and not _accepts_none(fields[key].annotation))
            }
        return data

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_eight(cls, value: int, info: ValidationInfo) -> int:
        if value % 8:
            raise ValueError(f"must be a multiple of 8 (got {value}; try {max(8, round(value / 8) * 8)})")
        return value

    @field_validator("styles", mode="before")
    @classmethod
    def _styles_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [value] if value else []
        return value

    @property
    def is_img2img(self) -> bool:
        return False

    @property
    def total_images(self) -> int:
        return self.batch_size * self.n_iter


def _accepts_none(annotation: Any) -> bool:
    return annotation is None or "None" in repr(annotation)


class Txt2ImgParams(GenerationParams):
    """``/sdapi/v1/txt2img`` request, plus hires-fix fields."""

    enable_hr: bool = False
    firstphase_width: int = Field(0, ge=0, le=MAX_SIDE)
    firstphase_height: int = Field(0, ge=0, le=MAX_SIDE)
    hr_scale: float = Field(2.0, ge=1.0, le=8.0)
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = Field(0, ge=0, le=1000)
    hr_resize_x: int = Field(0, ge=0, le=MAX_SIDE)
    hr_resize_y: int = Field(0, ge=0, le=MAX_SIDE)
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str = Field("", max_length=MAX_PROMPT_CHARS)
    hr_negative_prompt: str = Field("", max_length=MAX_PROMPT_CHARS)


class Img2ImgParams(GenerationParams):
    """``/sdapi/v1/img2img`` request (also inpainting when ``mask`` is set)."""

    init_images: list[str] | None = None
    resize_mode: Literal[0, 1, 2, 3] = 0
    denoising_strength: float | None = Field(0.75, ge=0.0, le=1.0)
    image_cfg_scale: float | None = Field(None, ge=0.0, le=100.0)
    mask: str | None = None
    mask_blur_x: int = Field(4, ge=0, le=256)
    mask_blur_y: int = Field(4, ge=0, le=256)
    mask_blur: int | None = Field(None, ge=0, le=256)
    mask_round: bool = True
    inpainting_fill: Literal[0, 1, 2, 3] = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = Field(0, ge=0, le=1024)
    inpainting_mask_invert: Literal[0, 1] = 0
    initial_noise_multiplier: float | None = Field(None, ge=0.0, le=2.0)
    latent_mask: str | None = None
    include_init_images: bool = False

    @property
    def is_img2img(self) -> bool:
        return True

    @property
    def effective_mask_blur(self) -> tuple[int, int]:
        if self.mask_blur is not None:
            return self.mask_blur, self.mask_blur
        return self.mask_blur_x, self.mask_blur_y


def check_limits(params: GenerationParams, limits: Limits) -> None:
    """Refuse (422, naming the field and the limit) a request that asks for more work than the launch limits
    allow: steps, images per job, output size (hires fix included). Init images are checked as they decode."""
    limits.check_steps("steps", params.steps)
    limits.check_images("n_iter", params.total_images)
    limits.check_output_size("width", params.width, params.height)
    if isinstance(params, Txt2ImgParams) and params.enable_hr:
        limits.check_steps("hr_second_pass_steps", params.hr_second_pass_steps)
        if params.hr_resize_x == 0 and params.hr_resize_y == 0:
            limits.check_output_size("hr_scale", params.width * params.hr_scale, params.height * params.hr_scale)
        else:  # the second pass covers the target keeping the aspect ratio, then crops
            x = params.hr_resize_x or params.hr_resize_y * params.width // params.height
            y = params.hr_resize_y or params.hr_resize_x * params.height // params.width
            scale = max(x / params.width, y / params.height)
            limits.check_output_size("hr_resize_x", params.width * scale, params.height * scale)

PARAMS_BY_KIND: dict[str, type[GenerationParams]] = {"txt2img": Txt2ImgParams, "img2img": Img2ImgParams}
"""The request model of each generation job kind (the API's ``type``, the UI tab, the queue's ``kind``)."""

INPAINTING_FILL_MODES = ("fill", "original", "latent noise", "latent nothing")
RESIZE_MODES = ("Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)")
