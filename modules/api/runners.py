"""Job runners the API needs beyond generation: model load/unload/reload and a built-in extras fallback.

They run on the queue's worker like every generation, so an options change that switches the checkpoint, an
unload or a reload never races a running job (A1111 does these under its global lock inside the request; Easel
queues them and answers at once). They are registered by a warm-up hook (the model manager exists only after
the warm-up) under kinds no other module uses.

``extras-builtin`` is a minimal post-processing runner used only when no extension registered ``extras`` by the
end of the warm-up: resize by a factor or to a size with Pillow's Lanczos or Nearest filters (upscaler names
``None``, ``Lanczos``, ``Nearest``), so ``/sdapi/v1/extra-single-image`` works on a bare install. Model-based
upscalers and face restoration belong to the extras extension; asked for here, they are reported in
``html_info`` and skipped.
"""

from __future__ import annotations

import logging
from typing import Any

from modules.core.atomic import atomic_write_bytes
from modules.core.errors import UserInputError
from modules.services import Services

log = logging.getLogger(__name__)

LOAD_MODEL = "load-model"
UNLOAD_MODEL = "unload-model"
RELOAD_MODEL = "reload-model"
EXTRAS = "extras"
EXTRAS_BUILTIN = "extras-builtin"

BUILTIN_UPSCALERS = ("None", "Lanczos", "Nearest")


def register_api_runners(services: Services) -> None:
    """Warm-up hook: register the API's runners (idempotent, so a second app on the same services is fine)."""
    runners = {
        LOAD_MODEL: lambda job, ctx: _load_model(services, job),
        UNLOAD_MODEL: lambda job, ctx: _unload_model(services),
        RELOAD_MODEL: lambda job, ctx: _reload_model(services),
        EXTRAS_BUILTIN: lambda job, ctx: run_builtin_extras(services, job, ctx),
    }
    for kind, runner in runners.items():
        if kind not in services.runners:
            services.register_runner(kind, runner)


def extras_kind(services: Services) -> str:
    """``extras`` when an extension registered that runner by the end of the warm-up, else the fallback."""
    return EXTRAS if EXTRAS in services.runners else EXTRAS_BUILTIN


def _load_model(services: Services, job: Any) -> dict[str, Any]:
    loaded = services.require_manager().ensure_loaded(job.payload.get("checkpoint"))
    return {"model": loaded.info.title}


def _unload_model(services: Services) -> dict[str, Any]:
    services.require_manager().unload()
    return {"model": None}


def _reload_model(services: Services) -> dict[str, Any]:
    loaded = services.require_manager().ensure_loaded(services.settings.options.sd_model_checkpoint)
    return {"model": loaded.info.title}


# -- the extras fallback --------------------------------------------------------------------------------------


def _resample(name: str, field: str) -> Any:
    from PIL import Image

    filters = {"lanczos": Image.Resampling.LANCZOS, "nearest": Image.Resampling.NEAREST}
    key = name.strip().lower()
    if key not in filters:
        raise UserInputError(field, f"unknown upscaler {name!r}; allowed here: {', '.join(BUILTIN_UPSCALERS)}")
    return filters[key]


def _target_size(payload: dict[str, Any], size: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int] | None]:
    """(size to resize to, size to centre-crop to or None) for A1111's two resize modes."""
    width, height = size
    if int(payload.get("resize_mode", 0)) == 1:
        want_w = int(payload.get("upscaling_resize_w", 512))
        want_h = int(payload.get("upscaling_resize_h", 512))
        scale = max(want_w / width, want_h / height)
        resized = (max(1, round(width * scale)), max(1, round(height * scale)))
        crop = (want_w, want_h) if payload.get("upscaling_crop", True) else None
        return resized, crop
    factor = float(payload.get("upscaling_resize", 2.0))
    return (max(1, round(width * factor)), max(1, round(height * factor))), None


def upscale_image(image: Any, payload: dict[str, Any]) -> tuple[Any, list[str]]:
    """Resize one image as the request asks; returns (image, notes for html_info)."""
    notes: list[str] = []
    first = str(payload.get("upscaler_1") or "None")
    second = str(payload.get("upscaler_2") or "None")
    visibility = float(payload.get("extras_upscaler_2_visibility") or 0.0)
    if first == "None" and (second == "None" or visibility <= 0):
        return image, notes
    size, crop = _target_size(payload, image.size)
    source = image.convert("RGB")
    result = source.resize(size, _resample(first, "upscaler_1")) if first != "None" else None
    if second != "None" and visibility > 0:
        from PIL import Image

        other = source.resize(size, _resample(second, "upscaler_2"))
        result = other if result is None else Image.blend(result, other, visibility)
        notes.append(f"Postprocess upscaler 2: {second}")
    assert result is not None
    if crop is not None and result.size != crop:
        left = (result.width - crop[0]) // 2
        top = (result.height - crop[1]) // 2
        result = result.crop((left, top, left + crop[0], top + crop[1]))
    scale_note = (f"{crop[0]}x{crop[1]}" if crop else f"{size[0]}x{size[1]}") if int(
        payload.get("resize_mode", 0)) == 1 else f"{float(payload.get('upscaling_resize', 2.0)):g}"
    notes.insert(0, f"Postprocess upscale {'to' if int(payload.get('resize_mode', 0)) == 1 else 'by'}: {scale_note}")
    if first != "None":
        notes.insert(1, f"Postprocess upscaler: {first}")
    return result, notes


def run_builtin_extras(services: Services, job: Any, ctx: Any) -> dict[str, Any]:
    """Runner for ``extras-builtin``: payload is an extra-single-image or extra-batch-images request."""
    from modules.processing.image_codec import decode_base64_image
    from modules.processing.image_metadata import embed_infotext, read_infotext

    payload = job.payload
    if "imageList" in payload:
        sources = [(item.get("data", ""), f"imageList[{index}].data")
                   for index, item in enumerate(payload.get("imageList") or [])]
    else:
        sources = [(payload.get("image", ""), "image")]
    if not sources:
        raise UserInputError("imageList", "no images given")
    warnings = []
    if float(payload.get("gfpgan_visibility") or 0) > 0 or float(payload.get("codeformer_visibility") or 0) > 0:
        warnings.append("face restoration is not available on this install (no face restoration model); skipped")
    folder = services.settings.data_paths.job_results / job.id
    folder.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    notes: list[str] = []
    for index, (data, field) in enumerate(sources):
        ctx.check()
        image = decode_base64_image(data, field, services.settings.limits.max_image_pixels)
        if str(payload.get("upscaler_1") or "None") != "None" or str(payload.get("upscaler_2") or "None") != "None":
            size, _ = _target_size(payload, image.size)
            services.settings.limits.check_output_size(
                "upscaling_resize_w" if int(payload.get("resize_mode", 0)) == 1 else "upscaling_resize", *size)
        infotext, _ = read_infotext(image)
        result, notes = upscale_image(image, payload)
        name = f"{index:03d}.png"
        atomic_write_bytes(folder / name, embed_infotext(result, infotext, "png"))
        names.append(name)
        ctx.report(index + 1, len(sources))
    html_info = "<p>" + ", ".join(notes + warnings) + "</p>" if notes or warnings else ""
    return {"images": names, "html_info": html_info, "warnings": warnings}
