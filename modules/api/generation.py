"""Turning a generation request into a queued job, shared by ``/sdapi/v1`` and ``/sdapi/v2``.

Everything that can be checked before the job reaches the device is checked here, so a bad request is a 4xx
at once instead of a failed job later: the sampler name (with A1111's schedule suffix split), the schedule
type, ``override_settings`` keys and values, the checkpoint they name, the init images of img2img, and the
script names (through the scripts service, when an extension provides one).
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from modules.core.errors import EaselError, NotFoundError, StartingError, UserInputError
from modules.core.paths import regular_file_inside
from modules.core.settings import Options, validate_option_changes
from modules.jobs import Job, JobStatus
from modules.models.vae import VaeFile, list_vaes, resolve_vae
from modules.processing.image_codec import decode_base64_image
from modules.processing.infotext import infotext_to_params, parse_infotext
from modules.processing.params import GenerationParams, Img2ImgParams, Txt2ImgParams, check_limits
from modules.services import Services

SAME_AS_FIRST_PASS = ("", "Use same sampler")
READY_POLL_SECONDS = 0.05


async def wait_ready(services: Services, timeout: float = 300.0) -> None:
    """Await the warm-up without blocking the event loop or holding a worker thread (it polls an Event)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not services.ready.is_set():
        if loop.time() >= deadline:
            raise StartingError("the processing core is still starting; try again in a moment")
        await asyncio.sleep(READY_POLL_SECONDS)


def validate_params(cls: type[GenerationParams], data: dict[str, Any], *, origin: str = "") -> GenerationParams:
    """Validate outside FastAPI's body parsing; a failure is a 422 naming the field, not a 500."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first.get("loc", ())) or "body"
        raise UserInputError(field, f"{origin}{first.get('msg', 'invalid value')}") from exc


def apply_infotext(services: Services, params: GenerationParams) -> GenerationParams:
    """A1111's ``infotext`` request field: pasted parameters fill the fields the client did not set.

    Setting-type keys go to ``override_settings`` (the client's own overrides win). The checkpoint named in the
    infotext is not pasted unless the ``disable_weights_auto_swap`` option is false (A1111's default keeps the
    selected model when parameters are pasted).
    """
    if not params.infotext:
        return params
    options: Options = services.settings.options
    extras = options.model_extra or {}
    skip = extras.get("infotext_skip_pasting") or []
    parsed = parse_infotext(params.infotext)
    callbacks = getattr(services, "callbacks", None)
    if callbacks is not None:  # A1111's infotext_pasted: extensions may adjust what the pasted text sets
        callbacks.call("infotext_pasted", params.infotext, parsed)
    fields, overrides = infotext_to_params(parsed, current_options=options.model_dump(),
                                           skip_keys=[str(key) for key in skip] if isinstance(skip, list) else [])
    if extras.get("disable_weights_auto_swap", True):
        overrides.pop("sd_model_checkpoint", None)
    vae = overrides.get("sd_vae")
    if isinstance(vae, str) and not _vae_known(services, vae):
        overrides.pop("sd_vae")  # pasted from another install: the checkpoint's own VAE, as A1111 falls back
    data = params.model_dump(exclude_unset=True)
    model_fields = type(params).model_fields
    for key, value in fields.items():
        if key in model_fields and key not in params.model_fields_set:
            data[key] = value
    if overrides:
        data["override_settings"] = {**overrides, **params.override_settings}
    return validate_params(type(params), data, origin="(from infotext) ")


def _check_sampler(services: Services, sampler: str | None, scheduler: str | None, field: str,
                   schedule_field: str) -> None:
    try:
        services.samplers.split_sampler_and_schedule(sampler, scheduler)
    except UserInputError as exc:
        if exc.field in ("sampler_name", "scheduler"):
            name = field if exc.field == "sampler_name" else schedule_field
            raise UserInputError(name, exc.reason) from exc
        raise


def check_override_settings(services: Services, overrides: dict[str, Any]) -> None:
    if not overrides:
        return
    try:
        validate_option_changes(services.settings.options, overrides)
    except UserInputError as exc:
        raise UserInputError(f"override_settings.{exc.field}", exc.reason) from exc
    checkpoint = overrides.get("sd_model_checkpoint")
    if checkpoint:
        services.catalog.check(str(checkpoint), "override_settings.sd_model_checkpoint",
                               allow_pickle=services.settings.flags.allow_pickle)
    vae = overrides.get("sd_vae")
    if isinstance(vae, str):
        resolve_vae(vae, None, _installed_vaes(services), "override_settings.sd_vae")


def _installed_vaes(services: Services) -> list[VaeFile]:
    return list_vaes(services.settings.model_paths.vae, services.catalog.folder)


def _vae_known(services: Services, name: str) -> bool:
    try:
        resolve_vae(name, None, _installed_vaes(services))
    except UserInputError:
        return False
    return True


def _check_init_images(params: Img2ImgParams, max_pixels: int) -> list[tuple[int, int]]:
    """Decode every init image and the mask (size checked before decoding); returns the init images' sizes."""
    sizes = [decode_base64_image(image, f"init_images[{index}]", max_pixels).size
             for index, image in enumerate(params.init_images or [])]
    if params.mask:
        decode_base64_image(params.mask, "mask", max_pixels)
    return sizes


async def prepare(services: Services, params: GenerationParams) -> GenerationParams:
    """Fill, normalise and check a request; returns the params to submit (raises 4xx EaselErrors)."""
    params = apply_infotext(services, params)
    if params.sampler_name is None and isinstance(params.sampler_index, str) and params.sampler_index.strip():
        # A1111 uses ``sampler_name or sampler_index`` (default "Euler") for API requests.
        params = validate_params(type(params), {**params.model_dump(exclude_unset=True),
                                                "sampler_name": params.sampler_index})
    _check_sampler(services, params.sampler_name, params.scheduler, "sampler_name", "scheduler")
    if isinstance(params, Txt2ImgParams) and params.enable_hr and params.hr_sampler_name not in (None,
                                                                                                *SAME_AS_FIRST_PASS):
        _check_sampler(services, params.hr_sampler_name, params.hr_scheduler, "hr_sampler_name", "hr_scheduler")
    check_override_settings(services, params.override_settings)
    if isinstance(params, Txt2ImgParams) and params.enable_hr and params.hr_checkpoint_name not in (
            None, "", "Use same checkpoint"):
        services.catalog.check(params.hr_checkpoint_name, "hr_checkpoint_name",
                               allow_pickle=services.settings.flags.allow_pickle)
    limits = services.settings.limits
    check_limits(params, limits)
    init_sizes: list[tuple[int, int]] = []
    if isinstance(params, Img2ImgParams):
        if not params.init_images:
            raise UserInputError("init_images", "img2img needs at least one init image (base64 or a data URL)")
        init_sizes = await services.cpu_work.run(_check_init_images, params, limits.max_image_pixels)
    if services.scripts is not None:  # the readiness middleware lets no request in before the warm-up built it
        services.scripts.validate(params, limits=limits, init_sizes=init_sizes)
    return params


async def submit(services: Services, kind: str, params: GenerationParams, *, source: str) -> Job:
    """Queue a generation job. Off the event loop: the insert is a SQLite write under the queue's lock, which
    the worker also holds while it records a job's end, and ``progress`` must never wait behind that."""
    payload = params.model_dump(mode="json")
    return await asyncio.to_thread(services.queue.submit, kind, payload, job_id=params.force_task_id, source=source,
                                   id_field="force_task_id")


def echo_parameters(params: GenerationParams) -> dict[str, Any]:
    """A1111's ``parameters``: the validated request; img2img leaves out its images unless include_init_images."""
    echoed = params.model_dump(mode="json")
    if isinstance(params, Img2ImgParams) and not params.include_init_images:
        echoed["init_images"] = None
        echoed["mask"] = None
    return echoed


def result_paths(services: Services, job: Job) -> list[Path]:
    """Files of a finished job's result (names listed in the result only; they live in ``jobs/<id>/``)."""
    result = job.result or {}
    folder = services.settings.data_paths.job_results / job.id
    paths = []
    names = result.get("images")
    for name in names if isinstance(names, list) else []:
        if not isinstance(name, str) or "/" in name or "\\" in name or name in ("", ".", ".."):
            continue
        paths.append(folder / name)
    return paths


def read_base64(paths: list[Path]) -> list[str]:
    """The result files (``jobs/<id>/<name>``) as base64; only regular files really inside the results folder."""
    for path in paths:
        if not regular_file_inside(path, path.parent.parent):
            raise NotFoundError(f"result file {path.name} is no longer on disk")
    return [base64.b64encode(path.read_bytes()).decode("ascii") for path in paths]


def raise_for_job(job: Job) -> None:
    """Turn a job that did not succeed into the error a synchronous (v1) caller gets."""
    from modules.api.errors import job_error

    if job.status is JobStatus.SUCCEEDED:
        return
    if job.status is JobStatus.CANCELLED:
        error = EaselError(f"job {job.id} was cancelled")
        error.status_code = 409
        error.error_name = "Cancelled"
        raise error
    raise job_error(job.error or f"job {job.id} failed", job.error_info)
