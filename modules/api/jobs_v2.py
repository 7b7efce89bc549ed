"""``/sdapi/v2``: Easel's own job API over the same queue as ``/sdapi/v1`` and the UI.

Routes
------
- ``POST /sdapi/v2/jobs`` submits a job and answers **202** at once with ``{id, status, position}``. The body is
  ``{"type": "txt2img" | "img2img", "params": {...}}`` where ``params`` is exactly a ``/sdapi/v1/txt2img`` or
  ``/img2img`` request (same fields, defaults and checks). A bare v1 payload with an added ``"type"`` field is
  accepted too (``type`` defaults to ``txt2img``). ``params.force_task_id`` becomes the job id. Bad input is a
  422 naming the field (``params.width`` in the envelope form, ``width`` in the bare form).
- ``GET /sdapi/v2/jobs`` lists jobs in FIFO order (``?status=queued,running``, ``limit``, ``offset``,
  ``newest_first``); ``GET /sdapi/v2/jobs/{id}`` gives one job: status, progress, eta, position (0 running,
  1 next, null finished), error, result (image URLs, info, infotexts, warnings) and its params (long strings such
  as base64 images elided).
- ``GET /sdapi/v2/jobs/{id}/images/{n}`` serves result image ``n`` (only files the job's result lists).
- ``GET /sdapi/v2/jobs/{id}/events`` is a Server-Sent-Events stream (see below).
- ``DELETE /sdapi/v2/jobs/{id}`` cancels a queued job at once or a running one within a sampler step, waits up
  to a few seconds for the final state and answers 200 with the job; 404 if unknown, 409 if already finished.
- ``GET /sdapi/v2/workers`` lists the queue's workers (the in-process one, or the Ray workers of ``--workers``/
  ``--ray-address``): id, node, pid, device, state (starting/idle/busy/dead), loaded models, free memory, jobs
  done, current job, restarts.

Persistence and restart policy
------------------------------
Jobs live in SQLite in the data dir (``queue.sqlite3``). After a restart, jobs that were **queued** are still
queued and run in their original FIFO order; a job that was **running** when the server crashed or was killed
goes back to the head of the queue and runs again as its next ``attempt`` (only the result of the current attempt
is ever stored); after three attempts it fails with ``"worker lost: ..."``. A job running when the server is
stopped cleanly ends **failed** with ``"interrupted: server stopped while the job ran"``. Finished jobs, with their
result files under ``jobs/<id>/``, stay retrievable until the retention limit (option ``job_retention_count``)
prunes them.

SSE event format
----------------
``Content-Type: text/event-stream``. The stream opens with ``retry: 2000``, then one message per progress event::

    id: <n>                 (0, 1, 2, ... per job; a gap means a slow client missed intermediate progress)
    event: progress         ("final" for the last message)
    data: {"id": ..., "status": "queued"|"running"|..., "step": s, "total": t, "batch_no": b, "batch_count": c,
           "progress": 0..1, "eta": seconds|null, "textinfo": str|null, "preview": base64 PNG (only with
           ?previews=1 and when the step produced one)}

The first message is the job's state when the client subscribed. The ``final`` message adds ``"job"``: the full
job view as ``GET /sdapi/v2/jobs/{id}`` returns it (status succeeded/failed/cancelled, error, result); the
stream then ends. A comment line (``: keep-alive``) is sent every 15 s of silence. Subscribing to a finished job
yields just its final message.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import FileResponse, StreamingResponse

from modules.api import generation
from modules.api.errors import error_response, job_error
from modules.api.schemas import JobList, JobSubmitted, JobView, WorkerList
from modules.api.v1.progress import encode_preview
from modules.core.errors import NotFoundError, UserInputError
from modules.core.paths import regular_file_inside
from modules.jobs import Job, JobEvent, JobStatus, JobSummary, validate_job_id
from modules.processing.params import PARAMS_BY_KIND
from modules.services import Services

SOURCE = "api-v2"
KEEPALIVE_SECONDS = 15.0
CANCEL_WAIT_SECONDS = 10.0
ELIDE_OVER_CHARS = 1024
SUBMIT_EXAMPLE = {"type": "txt2img", "params": {"prompt": "a red circle", "steps": 20, "width": 512, "height": 512}}


def _elide(value: Any) -> Any:
    """The payload with long strings (base64 images) replaced by a note, for job views."""
    if isinstance(value, str) and len(value) > ELIDE_OVER_CHARS:
        return f"<{len(value)} characters elided>"
    if isinstance(value, dict):
        return {key: _elide(item) for key, item in value.items() if not str(key).startswith("_")}
    if isinstance(value, list):
        return [_elide(item) for item in value]
    return value


def job_view(services: Services, job: Job, *, with_params: bool = False) -> dict[str, Any]:
    failure = job_error(job.error, job.error_info) if job.error else None
    result = None
    if job.result is not None:
        result = {key: value for key, value in job.result.items() if key not in ("saved", "finished_at")}
        if "images" in result:
            count = len(generation.result_paths(services, job))
            result["images"] = [f"/sdapi/v2/jobs/{job.id}/images/{index}" for index in range(count)]
    return {
        **job.model_dump(mode="json", include=set(JobSummary.model_fields)),
        "type": job.kind, "position": None if job.finished else services.queue.position(job.id),
        "eta": job.eta_seconds, "error_status": failure.status_code if failure is not None else None,
        "error_field": getattr(failure, "field", None) if failure is not None else None,
        "result": result, "params": _elide(job.payload) if with_params else None,
    }


def _event_data(services: Services, event: JobEvent) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": event.job_id, "status": event.status.value, "step": event.step, "total": event.total_steps,
        "batch_no": event.batch_no, "batch_count": event.batch_count, "progress": event.progress,
        "eta": event.eta_seconds, "textinfo": event.textinfo,
    }
    if event.final and event.job is not None:
        data["status"] = event.job.status.value
        data["job"] = job_view(services, event.job)
    return data


def _parse_submission(body: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    """(type, params, field prefix for errors) from either body form."""
    if not isinstance(body, dict):
        raise UserInputError("body", "expected a JSON object")
    if "params" in body and not isinstance(body["params"], dict):
        raise UserInputError("params", "must be an object holding a /sdapi/v1/txt2img or /img2img request, "
                                       f"not {type(body['params']).__name__}")
    if isinstance(body.get("params"), dict):
        kind, params, prefix = body.get("type") or "txt2img", body["params"], "params."
    else:
        params = {key: value for key, value in body.items() if key != "type"}
        kind, prefix = body.get("type") or "txt2img", ""
    if not isinstance(kind, str) or kind not in PARAMS_BY_KIND:
        raise UserInputError("type", f"unknown job type {kind!r}; allowed: {', '.join(PARAMS_BY_KIND)}")
    return kind, params, prefix


def _parse_statuses(text: str | None) -> list[JobStatus] | None:
    if not text:
        return None
    statuses = []
    for part in text.split(","):
        part = part.strip().lower()
        try:
            statuses.append(JobStatus(part))
        except ValueError:
            allowed = ", ".join(status.value for status in JobStatus)
            raise UserInputError("status", f"unknown status {part!r}; allowed: {allowed}") from None
    return statuses


def build_router(services: Services) -> APIRouter:
    router = APIRouter(prefix="/sdapi/v2", tags=["sdapi v2 (Easel jobs)"])
    queue = services.queue

    def get_job(job_id: str) -> Job:
        validate_job_id(job_id, field="id")
        job = queue.get(job_id)
        if job is None:
            raise NotFoundError(f"job {job_id!r} not found (unknown, or pruned by the retention limit)")
        return job

    @router.post("/jobs", status_code=202, response_model=JobSubmitted)
    async def submit_job(body: dict[str, Any] = Body(..., examples=[SUBMIT_EXAMPLE])) -> dict[str, Any]:
        """Queue a txt2img/img2img job; answers at once with its id (see the module doc for the body forms)."""
        await generation.wait_ready(services)  # script names and the runners are known only after the warm-up
        kind, raw, prefix = _parse_submission(body)
        try:
            params = generation.validate_params(PARAMS_BY_KIND[kind], raw)
            params = await generation.prepare(services, params)
        except UserInputError as exc:
            if prefix:
                raise UserInputError(prefix + str(exc.field), exc.reason) from exc
            raise
        job = await generation.submit(services, kind, params, source=SOURCE)
        return {"id": job.id, "status": job.status.value, "position": await asyncio.to_thread(queue.position, job.id)}

    @router.get("/jobs", response_model=JobList)
    async def list_jobs(status: str | None = Query(None, description="comma-separated: queued,running,..."),
                        limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0),
                        newest_first: bool = Query(False)) -> dict[str, Any]:
        """Jobs in FIFO order (or newest first), optionally filtered by status."""
        statuses = _parse_statuses(status)
        def read() -> list[dict[str, Any]]:
            jobs = queue.list(statuses, limit, offset=offset, newest_first=newest_first)
            return [job_view(services, job) for job in jobs]

        views = await asyncio.to_thread(read)
        return {"jobs": views, "count": len(views)}

    @router.get("/workers", response_model=WorkerList)
    async def list_workers() -> dict[str, Any]:
        """Every worker of the queue: id, node, pid, device, state, loaded models, jobs done, current job."""
        infos = await asyncio.to_thread(queue.workers)
        return {"workers": [{"id": info.id, "node": info.description.node, "pid": info.description.pid,
                             "device": info.description.device, "state": info.state.value,
                             "loaded_models": list(info.description.loaded_models),
                             "free_memory": info.description.free_memory, "jobs_done": info.jobs_done,
                             "current_job": info.current_job, "restarts": info.restarts} for info in infos]}

    @router.get("/jobs/{job_id}", response_model=JobView)
    async def read_job(job_id: str) -> dict[str, Any]:
        """One job: status, progress, ETA, queue position, error, result (image URLs) and params."""
        return await asyncio.to_thread(lambda: job_view(services, get_job(job_id), with_params=True))

    @router.get("/jobs/{job_id}/images/{index}", response_class=FileResponse)
    async def job_image(job_id: str, index: int) -> FileResponse:
        """Result image ``index`` of a finished job, as stored (infotext embedded)."""
        job = await asyncio.to_thread(get_job, job_id)
        paths = generation.result_paths(services, job)
        if not 0 <= index < len(paths):
            raise NotFoundError(f"job {job_id!r} has no result image {index} ({len(paths)} available)")
        path = paths[index]
        results = services.settings.data_paths.job_results  # the job's folder itself may not be a link out either
        if not await asyncio.to_thread(regular_file_inside, path, results):
            raise NotFoundError(f"result image {index} of job {job_id!r} is no longer on disk")
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=media_type)

    @router.get("/jobs/{job_id}/events", response_class=StreamingResponse,
                responses={200: {"content": {"text/event-stream": {}}}})
    async def job_events(job_id: str, previews: bool = Query(False, description="include preview images")
                         ) -> StreamingResponse:
        """Server-Sent Events of the job's progress, ending with a ``final`` event (format: module doc)."""
        validate_job_id(job_id, field="id")
        subscription = await asyncio.to_thread(queue.subscribe, job_id)  # NotFoundError: 404 before streaming

        async def stream() -> AsyncIterator[str]:
            try:
                yield "retry: 2000\n\n"
                while True:
                    event = await subscription.get_async(timeout=KEEPALIVE_SECONDS)
                    if event is None:
                        if subscription.finished:
                            return
                        yield ": keep-alive\n\n"
                        continue
                    data = _event_data(services, event)
                    if previews and event.preview is not None:
                        data["preview"] = await asyncio.to_thread(encode_preview, event.preview)
                    name = "final" if event.final else "progress"
                    yield f"id: {event.index}\nevent: {name}\ndata: {json.dumps(data)}\n\n"
                    if event.final:
                        return
            finally:
                subscription.close()

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    @router.delete("/jobs/{job_id}", response_model=JobView,
                   responses={404: {"description": "unknown job"}, 409: {"description": "already finished"}})
    async def cancel_job(job_id: str) -> Any:
        """Cancel a queued or running job; answers with the job (cancelled once the worker has stopped it)."""
        job = await asyncio.to_thread(get_job, job_id)
        if not job.finished and await asyncio.to_thread(queue.cancel, job_id):
            try:
                job = await queue.wait_async(job_id, timeout=CANCEL_WAIT_SECONDS)
            except TimeoutError:
                latest = await asyncio.to_thread(queue.get, job_id)
                job = latest or job
            return await asyncio.to_thread(job_view, services, job)
        latest = await asyncio.to_thread(queue.get, job_id)
        job = latest or job
        view = await asyncio.to_thread(job_view, services, job)
        return error_response(409, "Conflict", f"job {job_id!r} already finished ({job.status.value})", job=view)

    return router
