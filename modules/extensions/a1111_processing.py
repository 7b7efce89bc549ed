"""What ``modules.processing`` exports to A1111 scripts: the ``p`` classes, ``Processed``, ``process_images``.

``StableDiffusionProcessingTxt2Img(prompt=..., steps=...)`` builds a :class:`ProcessingRun` from A1111's
keyword arguments (the request fields are validated by the same pydantic models as the API; anything else,
``sd_model``, ``outpath_samples``, PIL ``init_images`` ..., is set as an attribute). Runs built by the
generation service are *adopted* (their class becomes the matching subclass) so ``isinstance(p,
StableDiffusionProcessingImg2Img)`` works in scripts. ``process_images(p)`` runs ``p`` through the job's
processor (with its progress and interrupt) when called inside a job, else through the service's processor.
"""

from __future__ import annotations

from typing import Any

from modules.core.errors import UserInputError
from modules.core.settings import Options, validate_option_changes
from modules.extensions import compat
from modules.processing.params import GenerationParams, Img2ImgParams, Txt2ImgParams
from modules.processing.run import ProcessedResult, ProcessingRun

_NOT_PARAMS = {"init_images", "mask"}  # base64 in the request model, PIL images on ``p``


def _options() -> Options:
    try:
        return compat.bound().settings.options
    except RuntimeError:
        return Options()


class StableDiffusionProcessing(ProcessingRun):
    """A1111's ``p``. Construct with A1111 keywords, or with ``(params, options)`` as Easel does."""

    _params_class: type[GenerationParams] = Txt2ImgParams

    def __init__(self, params: GenerationParams | None = None, options: Options | None = None,
                 **kwargs: Any) -> None:
        if params is None:
            fields = self._params_class.model_fields
            given = {key: value for key, value in kwargs.items() if key in fields and key not in _NOT_PARAMS}
            if isinstance(given.get("styles"), tuple):
                given["styles"] = list(given["styles"])
            try:
                params = self._params_class.model_validate(given)
            except Exception as exc:
                raise UserInputError("p", f"invalid processing arguments: {exc}") from exc
            extra = {key: value for key, value in kwargs.items() if key not in given}
        else:
            extra = kwargs
        super().__init__(params, options or _options())
        for key, value in extra.items():
            if key == "mask":
                self.image_mask = value
            elif key == "extra_generation_params":
                self.extra_generation_params = dict(value or {})
            elif key == "init_images":
                self.init_images = list(value or [])
            else:
                setattr(self, key, value)

    def close(self) -> None:
        """A1111 frees the sampler here; nothing is held per run in Easel."""

    @property  # type: ignore[override]
    def sd_model(self) -> Any:
        """The model in use as A1111 shows it (``p.sd_model.sd_checkpoint_info``, ``.is_sdxl``, the pipeline's
        modules); core code reads the same object's ``info``/``pipe``/``family`` as on a ``LoadedModel``."""
        from modules.extensions.a1111_models import model_view

        return model_view(self.__dict__.get("_sd_model_loaded"))

    @sd_model.setter
    def sd_model(self, value: Any) -> None:
        self.__dict__["_sd_model_loaded"] = getattr(value, "loaded_model", value)


class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    _params_class = Txt2ImgParams


class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    _params_class = Img2ImgParams


def adopt_run(run: ProcessingRun) -> None:
    """Give a service-built run the façade class matching its tab (same attributes, so this is safe)."""
    if type(run) is ProcessingRun:
        img2img = isinstance(run.params, Img2ImgParams)
        loaded = run.__dict__.pop("sd_model", None)
        run.__class__ = StableDiffusionProcessingImg2Img if img2img else StableDiffusionProcessingTxt2Img
        run.sd_model = loaded


class Processed(ProcessedResult):
    """A1111's ``Processed`` constructor: ``Processed(p, images, seed, info, ...)``; scripts build their results."""

    info: str = ""  # shadows the base class's read-only property: A1111 scripts assign it

    def __init__(self, p: Any, images_list: list[Any], seed: int = -1, info: str = "", subseed: int | None = None,
                 all_prompts: list[str] | None = None, all_negative_prompts: list[str] | None = None,
                 all_seeds: list[int] | None = None, all_subseeds: list[int] | None = None,
                 index_of_first_image: int = 0, infotexts: list[str] | None = None, comments: str = "",
                 extra_images_list: list[Any] | None = None) -> None:
        prompt = p.prompt if isinstance(p.prompt, str) else (p.prompt[0] if p.prompt else "")
        negative = p.negative_prompt if isinstance(p.negative_prompt, str) else \
            (p.negative_prompt[0] if p.negative_prompt else "")
        seed_value = seed if seed != -1 else getattr(p, "seed", -1)
        super().__init__(
            run=p, images=list(images_list), infotexts=list(infotexts or [info] * len(images_list)),
            all_prompts=list(all_prompts or getattr(p, "all_prompts", None) or [prompt]),
            all_negative_prompts=list(all_negative_prompts or getattr(p, "all_negative_prompts", None) or [negative]),
            all_seeds=list(all_seeds or getattr(p, "all_seeds", None) or [seed_value]),
            all_subseeds=list(all_subseeds or getattr(p, "all_subseeds", None) or
                              [subseed if subseed is not None else getattr(p, "subseed", -1)]),
            index_of_first_image=index_of_first_image, extra_images=list(extra_images_list or []),
            warnings=list(getattr(p, "warnings", [])), comments=comments)
        self.info = info or (self.infotexts[0] if self.infotexts else "")


def _apply_overrides(p: Any) -> None:
    overrides = dict(getattr(p, "override_settings", None) or {})
    if not overrides:
        return
    p.opts = validate_option_changes(p.opts, overrides)
    if "CLIP_stop_at_last_layers" in overrides:
        p.clip_skip = int(overrides["CLIP_stop_at_last_layers"])


def process_images(p: Any) -> ProcessedResult:
    """Run ``p`` and return its ``Processed`` (A1111's entry point for scripts)."""
    if not isinstance(p, ProcessingRun):
        raise TypeError(f"process_images needs a StableDiffusionProcessing object, got {type(p).__name__}")
    _apply_overrides(p)
    process = compat.current_process()
    if process is None:
        generation = compat.bound().generation
        if generation is None:
            raise RuntimeError("the generation service is not ready yet")
        process = generation.processor.process
    return process(p)


def fix_seed(p: Any) -> None:
    """Replace ``-1`` seeds by random ones, so copies of ``p`` share them (A1111's ``fix_seed``)."""
    from modules.processing.seeds import resolve_seed

    p.seed = resolve_seed(p.seed)
    p.subseed = resolve_seed(p.subseed)


def get_fixed_seed(seed: int | None) -> int:
    from modules.processing.seeds import resolve_seed

    return resolve_seed(seed)


def create_infotext(p: Any, all_prompts: list[str], all_seeds: list[int], all_subseeds: list[int],
                    comments: Any = None, iteration: int = 0, position_in_batch: int = 0,
                    use_main_prompt: bool = False, index: int | None = None,
                    all_negative_prompts: list[str] | None = None) -> str:
    """The infotext of one image of ``p`` (A1111 signature), written by the processor's infotext builder."""
    if index is None:
        index = position_in_batch + iteration * p.batch_size
    if use_main_prompt:
        index = 0
    saved = (p.all_prompts, p.all_seeds, p.all_subseeds, p.all_negative_prompts)
    p.all_prompts, p.all_seeds, p.all_subseeds = list(all_prompts), list(all_seeds), list(all_subseeds)
    if all_negative_prompts is not None:
        p.all_negative_prompts = list(all_negative_prompts)
    try:
        index = min(index, max(0, len(p.all_seeds) - 1))
        return _processor().infotext(p, index)
    finally:
        p.all_prompts, p.all_seeds, p.all_subseeds, p.all_negative_prompts = saved


def _processor() -> Any:
    generation = compat.bound().generation
    if generation is not None:
        return generation.processor
    from modules.processing.processor import Processor
    from modules.processing.samplers import build_default_registry

    return Processor(samplers=build_default_registry(), model_provider=lambda run: None)


EXPORTS = {
    "StableDiffusionProcessing": StableDiffusionProcessing,
    "StableDiffusionProcessingTxt2Img": StableDiffusionProcessingTxt2Img,
    "StableDiffusionProcessingImg2Img": StableDiffusionProcessingImg2Img,
    "Processed": Processed,
    "process_images": process_images,
    "fix_seed": fix_seed,
    "get_fixed_seed": get_fixed_seed,
    "create_infotext": create_infotext,
}
