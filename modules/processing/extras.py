"""The "extras" job: upscale (and face-restore) finished images, for ``/sdapi/v1/extra-single-image``,
``/sdapi/v1/extra-batch-images`` and the Extras tab.

Request fields and defaults are A1111's ``ExtrasSingleImageRequest``/``ExtrasBatchImagesRequest``:
``resize_mode`` 0 scales by ``upscaling_resize``, 1 scales until ``upscaling_resize_w x upscaling_resize_h`` is
covered and, with ``upscaling_crop``, crops the centre to exactly that size; ``upscaler_2`` is blended over
``upscaler_1``'s result with ``extras_upscaler_2_visibility``. Face restoration (``gfpgan_visibility``,
``codeformer_visibility`` with ``codeformer_weight``) runs when the face restorer service has that model; otherwise
the result carries a note saying what to install, and the job still succeeds (A1111 clients expect an image).
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from PIL import Image
from pydantic import ConfigDict, Field, model_validator

from modules.core import cancellation
from modules.core.atomic import atomic_write_bytes
from modules.core.errors import EaselError, JobCancelled, NotFoundError, UserInputError
from modules.core.limits import Limits
from modules.core.validation import StrictInput
from modules.processing.image_codec import decode_base64_image
from modules.processing.image_metadata import embed_infotext, read_infotext

log = logging.getLogger(__name__)

NONE_UPSCALER = "None"


class ExtrasParams(StrictInput):
    """Fields shared by the single-image and batch extras requests."""

    model_config = ConfigDict(extra="ignore")

    resize_mode: Literal[0, 1] = 0
    show_extras_results: bool = True
    gfpgan_visibility: float = Field(0.0, ge=0.0, le=1.0)
    codeformer_visibility: float = Field(0.0, ge=0.0, le=1.0)
    codeformer_weight: float = Field(0.0, ge=0.0, le=1.0)
    upscaling_resize: float = Field(2.0, ge=1.0, le=8.0)
    upscaling_resize_w: int = Field(512, ge=1, le=8192)
    upscaling_resize_h: int = Field(512, ge=1, le=8192)
    upscaling_crop: bool = True
    upscaler_1: str = NONE_UPSCALER
    upscaler_2: str = NONE_UPSCALER
    extras_upscaler_2_visibility: float = Field(0.0, ge=0.0, le=1.0)
    upscale_first: bool = False
    save_images: bool = Field(False, description="also save the results to the outputs folder (the UI does; "
                                                 "A1111's API never does)")

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


class ExtrasSingleImageParams(ExtrasParams):
    image: str = ""


class ExtrasFile(StrictInput):
    data: str
    name: str = ""


class ExtrasBatchImagesParams(ExtrasParams):
    imageList: list[ExtrasFile] = Field(default_factory=list)


def upscaled_size(params: ExtrasParams, size: tuple[int, int]) -> tuple[int, int]:
    """The size the upscaler produces for an input of ``size`` (before a resize-mode-1 crop)."""
    width, height = size
    if params.resize_mode == 1:
        factor = max(params.upscaling_resize_w / max(1, width), params.upscaling_resize_h / max(1, height))
    else:
        factor = params.upscaling_resize
    return round(width * factor), round(height * factor)


def check_extras_limits(params: ExtrasParams, sizes: list[tuple[str, tuple[int, int]]], limits: Limits) -> None:
    """Refuse (422) an extras request whose upscaled images would exceed ``--max-output-pixels``."""
    if params.upscaler_1 == NONE_UPSCALER and params.upscaler_2 == NONE_UPSCALER:
        return
    field = "upscaling_resize_w" if params.resize_mode == 1 else "upscaling_resize"
    for _, size in sizes:
        limits.check_output_size(field, *upscaled_size(params, size))


def parse_extras_payload(payload: dict[str, Any]) -> ExtrasSingleImageParams | ExtrasBatchImagesParams:
    """A batch request has ``imageList``; anything else is a single-image request."""
    if "imageList" in payload:
        return ExtrasBatchImagesParams.model_validate(payload)
    return ExtrasSingleImageParams.model_validate(payload)


class RestoredFaces(Protocol):
    image: Image.Image
    faces: list[Any]  # the detected face boxes


class FaceRestorer(Protocol):
    name: str  # "GFPGAN" or "CodeFormer"

    def restore(self, image: Image.Image, *, visibility: float, weight: float) -> RestoredFaces: ...


class FaceRestorers(Protocol):
    """``modules.faces.service.FaceRestorerService``: ``get`` raises an EaselError that says what to install."""

    def get(self, name: str) -> FaceRestorer: ...


@dataclass
class ExtrasResult:
    images: list[Image.Image]
    infotexts: list[str]
    names: list[str]
    postprocess_info: list[str] = field(default_factory=list)  # the "Postprocess ..." line of each image
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def html_info(self) -> str:
        """A1111's ``html_info``: the last image's postprocessing parameters, plus notes, as HTML paragraphs."""
        parts = []
        if self.postprocess_info and self.postprocess_info[-1]:
            parts.append(f"<p>{html.escape(self.postprocess_info[-1])}</p>")
        parts.extend(f"<p>{html.escape(note)}</p>" for note in self.notes)
        return "\n".join(parts)


@dataclass
class ExtrasService:
    """Runs extras jobs; upscalers come from :class:`~modules.upscalers.service.UpscalerService`."""

    settings: Any  # Settings
    upscalers: Any  # UpscalerService
    image_store: Any = None  # ImageStore
    face_restorers: FaceRestorers | None = None
    # The extension postprocessing scripts (a ``PostprocessingRunner``), looked up per job: they load after this
    # service is built.
    postprocessing: Callable[[], Any] | None = None

    def run_job(self, job: Any, ctx: Any) -> dict[str, Any]:
        params = parse_extras_payload(dict(job.payload))
        result = self.process(params, ctx=ctx, save=params.save_images)
        return self.store_result(job.id, result)

    def inputs(self, params: ExtrasParams) -> list[tuple[Image.Image, str]]:
        limits: Limits = self.settings.limits
        if isinstance(params, ExtrasBatchImagesParams):
            if not params.imageList:
                raise UserInputError("imageList", "no images to process")
            return [(decode_base64_image(item.data, f"imageList[{index}].data", limits.max_image_pixels), item.name)
                    for index, item in enumerate(params.imageList)]
        assert isinstance(params, ExtrasSingleImageParams)
        return [(decode_base64_image(params.image, "image", limits.max_image_pixels), "")]

    def process(self, params: ExtrasParams, *, ctx: Any = None, save: bool = False,
                images: list[tuple[Image.Image, str]] | None = None) -> ExtrasResult:
        items = images if images is not None else self.inputs(params)
        self._check_upscalers(params)
        check_extras_limits(params, [(name, image.size) for image, name in items], self.settings.limits)
        result = ExtrasResult([], [], [])
        for index, (image, name) in enumerate(items):
            if ctx is not None:
                if ctx.should_stop():
                    result.interrupted = True
                    break
                ctx.report(index, len(items), textinfo=f"extras {index + 1}/{len(items)}")
            notes: list[str] = []
            try:
                outputs = self.process_outputs(image, params, notes)
            except JobCancelled:  # stopped inside an upscaler tile or a face: a cancel ends the job, an
                cancellation.check_abort()  # interrupt keeps the images finished so far (A1111)
                result.interrupted = True
                break
            for note in notes:
                _add_note(result.notes, note)
            geninfo, _ = read_infotext(image)
            for processed, info in outputs:
                infotext = f"{geninfo}\n{info}" if geninfo and info else (geninfo or info)
                result.images.append(processed)
                result.infotexts.append(infotext)
                result.postprocess_info.append(info)
                result.names.append(name)
                if save:
                    self._save(processed, infotext, name)
        if ctx is not None and not result.interrupted:
            ctx.report(len(items), len(items))
        return result

    def _check_upscalers(self, params: ExtrasParams) -> None:
        for field_name in ("upscaler_1", "upscaler_2"):
            name = getattr(params, field_name)
            if name != NONE_UPSCALER:
                self.upscalers.get(name, field_name)

    def process_image(self, image: Image.Image, params: ExtrasParams) -> tuple[Image.Image, str, list[str]]:
        """One image: face restoration and upscaling in the requested order; returns image, infotext, notes."""
        info: dict[str, Any] = {}
        notes: list[str] = []
        image = self._builtin(image.convert("RGB"), params, info, notes)
        return image, _info_text(info), notes

    def process_outputs(self, image: Image.Image, params: ExtrasParams,
                        notes: list[str]) -> list[tuple[Image.Image, str]]:
        """One input image through the extension postprocessing scripts and Easel's own step; returns the image and
        every extra image a script added, each with its infotext."""
        runner = self.postprocessing() if self.postprocessing is not None else None
        if runner is None or not runner.scripts:
            info: dict[str, Any] = {}
            return [(self._builtin(image.convert("RGB"), params, info, notes), _info_text(info))]

        def builtin(target: Image.Image, target_info: dict[str, Any]) -> Image.Image:
            return self._builtin(target.convert("RGB"), params, target_info, notes)

        options = self.settings.options
        outputs = runner.process_image(image.convert("RGB"), builtin, notes=notes,
                                       operation_order=getattr(options, "postprocessing_operation_order", None) or [],
                                       disabled=getattr(options, "postprocessing_disable_in_extras", None) or [])
        return [(output, _info_text(output_info)) for output, output_info in outputs]

    def _builtin(self, image: Image.Image, params: ExtrasParams, info: dict[str, Any],
                 notes: list[str]) -> Image.Image:
        if params.upscale_first:
            image = self._upscale(image, params, info)
            return self._restore_faces(image, params, info, notes)
        image = self._restore_faces(image, params, info, notes)
        return self._upscale(image, params, info)

    def _upscale(self, image: Image.Image, params: ExtrasParams, info: dict[str, Any]) -> Image.Image:
        if params.upscaler_1 == NONE_UPSCALER:
            return image
        if params.resize_mode == 1:
            width, height = params.upscaling_resize_w, params.upscaling_resize_h
            factor = max(width / image.width, height / image.height)
            info["Postprocess upscale to"] = f"{width}x{height}"
        else:
            factor = params.upscaling_resize
            info["Postprocess upscale by"] = _number(factor)
        first = self.upscalers.upscale(image, factor, params.upscaler_1, "upscaler_1")
        info["Postprocess upscaler"] = params.upscaler_1
        if params.upscaler_2 != NONE_UPSCALER and params.extras_upscaler_2_visibility > 0:
            second = self.upscalers.upscale(image, factor, params.upscaler_2, "upscaler_2")
            if second.size != first.size:
                second = second.resize(first.size, Image.Resampling.LANCZOS)
            first = Image.blend(first, second, params.extras_upscaler_2_visibility)
            info["Postprocess upscaler 2"] = params.upscaler_2
        if params.resize_mode == 1 and params.upscaling_crop:
            width, height = params.upscaling_resize_w, params.upscaling_resize_h
            left, top = (first.width - width) // 2, (first.height - height) // 2
            first = first.crop((left, top, left + width, top + height))
            info["Postprocess crop to"] = f"{width}x{height}"
        return first

    def _restore_faces(self, image: Image.Image, params: ExtrasParams, info: dict[str, Any],
                       notes: list[str]) -> Image.Image:
        for name, visibility, weight in (("GFPGAN", params.gfpgan_visibility, None),
                                         ("CodeFormer", params.codeformer_visibility, params.codeformer_weight)):
            if visibility <= 0:
                continue
            try:
                if self.face_restorers is None:
                    raise NotFoundError(f"no {name} model is installed")
                restored = self.face_restorers.get(name).restore(
                    image, visibility=visibility, weight=weight if weight is not None else 0.5)
            except EaselError as exc:
                _add_note(notes, f"{name} face restoration skipped: {exc.message}")
                continue
            if not restored.faces:
                _add_note(notes, f"{name}: no face found")
            image = restored.image
            info[f"{name} visibility"] = _number(visibility)
            if weight is not None:
                info["CodeFormer weight"] = _number(weight)
        return image

    # -- outputs ----------------------------------------------------------------------------------------------
    def _save(self, image: Image.Image, infotext: str, name: str) -> None:
        if self.image_store is None or not self.settings.options.samples_save:
            return
        self.image_store.save(image, kind="extras", prompt=Path(name).stem if name else "",
                              infotext=infotext or None, extra={"width": image.width, "height": image.height})

    def store_result(self, job_id: str, result: ExtrasResult) -> dict[str, Any]:
        folder = Path(self.settings.data_paths.job_results) / job_id
        folder.mkdir(parents=True, exist_ok=True)
        options = self.settings.options
        fmt = options.samples_format
        ext = "jpg" if fmt in ("jpg", "jpeg") else fmt
        files = []
        for index, image in enumerate(result.images):
            target = folder / f"{index:03d}.{ext}"
            atomic_write_bytes(target, embed_infotext(image, result.infotexts[index] or None, fmt,
                                                      options.jpeg_quality))
            files.append(target.name)
        return {
            "images": files,
            "html_info": result.html_info,
            "infotexts": result.infotexts,
            "names": result.names,
            "warnings": result.notes,
            "interrupted": result.interrupted,
            "finished_at": time.time(),
        }


def _add_note(notes: list[str], note: str) -> None:
    if note not in notes:
        notes.append(note)


def _info_text(info: dict[str, Any]) -> str:
    """A1111's postprocessing infotext: ``key: value`` pairs (a bare key when key and value are equal), ``None``
    values left out."""
    return ", ".join(key if key == value else f"{key}: {value}" for key, value in info.items() if value is not None)


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(float(value), 4)
