"""The mutable state of one generation run and its result, with A1111's attribute names.

Scripts (``Script.process(p, ...)``, the XYZ grid copying ``p`` and changing ``p.steps`` ...) read and write
these attributes, so while a run is processed *they* are the source of truth; the validated request
(:class:`~modules.processing.params.GenerationParams`) is only where they start. The A1111 façade
(``modules.processing.StableDiffusionProcessing``) is a thin subclass of :class:`ProcessingRun`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from modules.core.settings import Options
from modules.processing.params import GenerationParams, Img2ImgParams, Txt2ImgParams

if TYPE_CHECKING:
    import torch
    from PIL import Image

EASEL_VERSION = "easel-0.1.0"

UnetKwargs = Callable[[int, "torch.Tensor", "torch.Tensor", "dict[str, Any] | None"], "dict[str, Any]"]
"""Called by the engine at every step: ``(step_index, latent_input, embeds, added_cond_kwargs) -> dict`` merged
into the UNet call (see :mod:`modules.processing.unet_extras`)."""


@dataclass
class DenoisePass:
    """What a UNet-kwargs provider needs to know about one denoising pass of one batch."""

    run: ProcessingRun
    pipe: Any
    timesteps: Sequence[torch.Tensor]
    width: int
    height: int
    batch_size: int
    guidance: bool  # classifier-free guidance: latent_input holds [uncond, cond...] copies
    second_pass: bool = False


UnetKwargsProvider = Callable[[DenoisePass], "UnetKwargs | None"]
"""Asked once per denoising pass (first pass, hires second pass) for the step callback, or None."""


class ControlProvider(Protocol):
    """A provider that patches the pipeline for its run (IP-Adapter) and must be closed when the run ends."""

    def __call__(self, denoise_pass: DenoisePass) -> UnetKwargs | None: ...

    def close(self) -> None: ...


class ProcessingRun:
    """A1111's ``StableDiffusionProcessing`` shape, built from validated parameters."""

    def __init__(self, params: GenerationParams, options: Options) -> None:
        self.params = params
        self.opts = options
        self.prompt: str | list[str] = params.prompt
        self.negative_prompt: str | list[str] = params.negative_prompt
        self.styles: list[str] = list(params.styles)
        self.seed: int = params.seed
        self.subseed: int = params.subseed
        self.subseed_strength: float = params.subseed_strength
        self.seed_resize_from_w: int = params.seed_resize_from_w
        self.seed_resize_from_h: int = params.seed_resize_from_h
        # A1111: a null sampler_name falls back to sampler_index (default "Euler").
        fallback = params.sampler_index if isinstance(params.sampler_index, str) else None
        self.sampler_name: str | None = params.sampler_name or fallback
        self.scheduler: str | None = params.scheduler
        self.batch_size: int = params.batch_size
        self.n_iter: int = params.n_iter
        self.steps: int = params.steps
        self.cfg_scale: float = params.cfg_scale
        self.width: int = params.width
        self.height: int = params.height
        self.restore_faces: bool | None = params.restore_faces
        self.tiling: bool | None = params.tiling
        self.eta: float | None = params.eta
        self.denoising_strength: float | None = params.denoising_strength
        self.clip_skip: int = params.clip_skip or options.CLIP_stop_at_last_layers
        self.override_settings: dict[str, Any] = dict(params.override_settings)
        self.do_not_save_samples: bool = params.do_not_save_samples
        self.do_not_save_grid: bool = params.do_not_save_grid
        self.disable_extra_networks: bool = params.disable_extra_networks
        self.script_args: list[Any] = list(params.script_args)
        self.extra_generation_params: dict[str, Any] = {}
        self.all_prompts: list[str] = []
        self.all_negative_prompts: list[str] = []
        self.all_seeds: list[int] = []
        self.all_subseeds: list[int] = []
        self.iteration: int = 0
        self.batch_index: int = 0
        self.job_timestamp: str = time.strftime("%Y%m%d%H%M%S")
        self.warnings: list[str] = []
        self.comments: dict[str, Any] = dict(params.comments or {})
        self.sd_model: Any = None  # the LoadedModel in use, set by the processor
        self.sd_model_name: str | None = None
        self.sd_model_hash: str | None = None
        self.sd_vae_name: str | None = None
        self.sd_vae_hash: str | None = None
        self.scripts: Any = None  # the ScriptRunner of this run (A1111 extensions look at p.scripts)
        self.hooks: list[ProcessingHooks] = []
        self.denoise_hooks: list[Any] = []  # engine.DenoiseHooks (CFG callbacks)
        self.extra_network_data: dict[str, Any] = {}
        self.unet_kwargs_providers: list[UnetKwargsProvider] = []  # extra UNet inputs, asked once per pass
        self.control_provider: ControlProvider | None = None  # ControlNet / T2I-Adapter / IP-Adapter units
        self.user: str | None = None
        self.saving_seconds: float = 0.0  # spent writing samples to the outputs folder (the job's timings)
        self.outpath_samples: str | None = None
        self.outpath_grids: str | None = None
        # img2img
        self.init_images: list[Any] = []
        self.image_mask: Any = None
        self.resize_mode: int = 0
        self.mask_blur_x: int = 4
        self.mask_blur_y: int = 4
        self.inpainting_fill: int = 0
        self.inpaint_full_res: bool = True
        self.inpaint_full_res_padding: int = 0
        self.inpainting_mask_invert: int = 0
        self.initial_noise_multiplier: float = 1.0
        self.image_cfg_scale: float | None = None
        self.include_init_images: bool = False
        if isinstance(params, Img2ImgParams):
            self.resize_mode = params.resize_mode
            self.mask_blur_x, self.mask_blur_y = params.effective_mask_blur
            self.inpainting_fill = params.inpainting_fill
            self.inpaint_full_res = params.inpaint_full_res
            self.inpaint_full_res_padding = params.inpaint_full_res_padding
            self.inpainting_mask_invert = params.inpainting_mask_invert
            self.initial_noise_multiplier = params.initial_noise_multiplier or 1.0
            self.image_cfg_scale = params.image_cfg_scale
            self.include_init_images = params.include_init_images
        # hires fix (txt2img)
        self.enable_hr: bool = False
        self.hr_scale: float = 2.0
        self.hr_upscaler: str | None = None
        self.hr_second_pass_steps: int = 0
        self.hr_resize_x: int = 0
        self.hr_resize_y: int = 0
        self.hr_sampler_name: str | None = None
        self.hr_scheduler: str | None = None
        self.hr_prompt: str = ""
        self.hr_negative_prompt: str = ""
        self.hr_checkpoint_name: str | None = None
        if isinstance(params, Txt2ImgParams):
            self.enable_hr = params.enable_hr
            self.hr_scale = params.hr_scale
            self.hr_upscaler = params.hr_upscaler
            self.hr_second_pass_steps = params.hr_second_pass_steps
            self.hr_resize_x, self.hr_resize_y = params.hr_resize_x, params.hr_resize_y
            self.hr_sampler_name, self.hr_scheduler = params.hr_sampler_name, params.hr_scheduler
            self.hr_prompt, self.hr_negative_prompt = params.hr_prompt, params.hr_negative_prompt
            self.hr_checkpoint_name = params.hr_checkpoint_name

    @property
    def is_img2img(self) -> bool:
        return bool(self.init_images)

    @property
    def is_inpaint(self) -> bool:
        return self.image_mask is not None

    @property
    def mask_blur(self) -> int:
        return max(self.mask_blur_x, self.mask_blur_y)

    @mask_blur.setter
    def mask_blur(self, value: int) -> None:
        self.mask_blur_x = self.mask_blur_y = value


@dataclass
class ProcessedResult:
    """A1111's ``Processed``: the images of a run and everything needed to describe them."""

    run: ProcessingRun
    images: list[Any]
    infotexts: list[str]
    all_prompts: list[str]
    all_negative_prompts: list[str]
    all_seeds: list[int]
    all_subseeds: list[int]
    index_of_first_image: int = 0
    extra_images: list[Any] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    saved_paths: list[str] = field(default_factory=list)
    interrupted: bool = False
    comments: str = ""
    describe: Callable[[ProcessingRun, int], str] | None = field(default=None, repr=False)
    """Builds the infotext of image ``index`` of a run (the processor's infotext writer)."""

    def infotext(self, p: ProcessingRun, index: int) -> str:
        """A1111's ``Processed.infotext(p, index)``: image ``index``'s infotext, written from ``p`` as it is now
        (extension values added after the run included); the stored text when no writer is attached."""
        if self.describe is not None and p.all_seeds:
            return self.describe(p, max(0, min(index, len(p.all_seeds) - 1)))
        position = index + self.index_of_first_image
        if 0 <= position < len(self.infotexts):
            return self.infotexts[position]
        return self.infotexts[-1] if self.infotexts else ""

    @property
    def seed(self) -> int:
        return self.all_seeds[0] if self.all_seeds else self.run.seed

    @property
    def subseed(self) -> int:
        return self.all_subseeds[0] if self.all_subseeds else self.run.subseed

    @property
    def prompt(self) -> str:
        return self.all_prompts[0] if self.all_prompts else str(self.run.prompt)

    @property
    def negative_prompt(self) -> str:
        return self.all_negative_prompts[0] if self.all_negative_prompts else str(self.run.negative_prompt)

    @property
    def info(self) -> str:
        return self.infotexts[0] if self.infotexts else ""

    def js(self) -> str:
        """The ``info`` JSON string of A1111's API responses (``Processed.js()`` keys)."""
        run = self.run
        data = {
            "prompt": self.prompt,
            "all_prompts": self.all_prompts,
            "negative_prompt": self.negative_prompt,
            "all_negative_prompts": self.all_negative_prompts,
            "seed": self.seed,
            "all_seeds": self.all_seeds,
            "subseed": self.subseed,
            "all_subseeds": self.all_subseeds,
            "subseed_strength": run.subseed_strength,
            "width": run.width,
            "height": run.height,
            "sampler_name": run.sampler_name,
            "cfg_scale": run.cfg_scale,
            "steps": run.steps,
            "batch_size": run.batch_size,
            "restore_faces": run.restore_faces,
            "face_restoration_model": run.opts.face_restoration_model if run.restore_faces else None,
            "sd_model_name": run.sd_model_name,
            "sd_model_hash": run.sd_model_hash,
            "sd_vae_name": run.sd_vae_name,
            "sd_vae_hash": run.sd_vae_hash,
            "seed_resize_from_w": run.seed_resize_from_w,
            "seed_resize_from_h": run.seed_resize_from_h,
            "denoising_strength": run.denoising_strength,
            "extra_generation_params": {k: v for k, v in run.extra_generation_params.items() if not callable(v)},
            "index_of_first_image": self.index_of_first_image,
            "infotexts": self.infotexts,
            "styles": run.styles,
            "job_timestamp": run.job_timestamp,
            "clip_skip": run.clip_skip,
            "is_using_inpainting_conditioning": bool(run.sd_model and run.sd_model.family.is_inpaint),
            "version": EASEL_VERSION,
            "warnings": self.warnings,
            "interrupted": self.interrupted,
        }
        return json.dumps(data, default=str)


ModelProvider = Callable[[ProcessingRun], Any]
"""Returns the LoadedModel a run needs (switching models through the manager when an override asks)."""


class ProcessingHooks:
    """Extension points around a run, with A1111's Script method names. The processor calls every method of every
    hook in ``ProcessingRun.hooks``; a subclass overrides those it acts on, the others do nothing."""

    def before_process(self, run: ProcessingRun) -> None:
        """Before anything of the run is prepared (A1111's ``setup`` and ``before_process``)."""

    def process(self, run: ProcessingRun) -> None:
        """The run's prompts and seeds are known; nothing is generated yet."""

    def before_process_batch(self, run: ProcessingRun, batch_number: int, prompts: list[str],
                             seeds: list[int], subseeds: list[int]) -> None:
        """Before a batch's prompts are encoded."""

    def process_batch(self, run: ProcessingRun, batch_number: int, prompts: list[str],
                      seeds: list[int], subseeds: list[int]) -> None:
        """Before a batch is sampled; ``prompts`` may be changed in place."""

    def postprocess_batch(self, run: ProcessingRun, images: list[Image.Image], batch_number: int) -> None:
        """After a batch is decoded."""

    def postprocess_image(self, run: ProcessingRun, image: ImageHolder) -> None:
        """Each image of a batch; ``image.image`` may be replaced."""

    def postprocess(self, run: ProcessingRun, result: ProcessedResult) -> None:
        """After the whole run."""

    def before_sampling(self, run: ProcessingRun, x: torch.Tensor, noise: torch.Tensor, c: Any, uc: Any) -> None:
        """Right before a sampling pass starts from latents ``x`` (A1111's ``process_before_every_sampling``)."""

    def before_hr(self, run: ProcessingRun) -> None:
        """Before a txt2img batch's hires second pass."""

    def post_sample(self, run: ProcessingRun, samples: SampledLatents) -> None:
        """After sampling (and the hires pass), before decoding; ``samples.samples`` may be replaced."""

    def postprocess_image_after_composite(self, run: ProcessingRun, image: ImageHolder) -> None:
        """After ``postprocess_image`` (img2img's inpaint composite is already applied then)."""

    def extra_noise(self, run: ProcessingRun, params: ExtraNoise) -> None:
        """img2img with ``img2img_extra_noise`` > 0: ``params.noise`` may be replaced before it is added."""


@dataclass
class ImageHolder:
    """A1111's ``PostprocessImageArgs``: hooks replace ``image`` to change the saved/returned picture."""

    image: Image.Image


@dataclass
class SampledLatents:
    """A1111's ``PostSampleArgs``: the batch's denoised latents before decoding; hooks may replace ``samples``."""

    samples: torch.Tensor


@dataclass
class ExtraNoise:
    """A1111's ``ExtraNoiseParams``: ``noise`` (replaceable), the init latents ``x`` and the noised ones ``xi``."""

    noise: torch.Tensor
    x: torch.Tensor
    xi: torch.Tensor
