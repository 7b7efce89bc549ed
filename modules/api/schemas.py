"""Request and response models of the API that are not processing parameters.

Generation requests are :class:`modules.processing.params.Txt2ImgParams` / ``Img2ImgParams`` themselves (the
request model *is* the processing input); these are the other A1111 shapes (``docs/A1111-CONTRACT.md``) and
Easel's ``/sdapi/v2`` job views. Field names are the contract; A1111 clients read them by name.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modules.core.validation import StrictInput
from modules.jobs import JobSummary
from modules.processing.extras import ExtrasBatchImagesParams, ExtrasSingleImageParams


class _Lenient(StrictInput):
    """Requests ignore unknown keys (clients send fields of newer A1111 versions) and take null as default."""

    model_config = ConfigDict(extra="ignore")


# -- generation responses -------------------------------------------------------------------------------------


class TextToImageResponse(BaseModel):
    images: list[str] = Field(default_factory=list, description="base64 images in samples_format, infotext inside")
    parameters: dict[str, Any] = Field(default_factory=dict, description="the request as validated")
    info: str = Field("", description="A1111's Processed.js() JSON string")


class ImageToImageResponse(TextToImageResponse):
    pass


# -- extras ---------------------------------------------------------------------------------------------------


# The extras request models are the ones the extras runner consumes (request model = processing input).
ExtrasSingleImageRequest = ExtrasSingleImageParams
ExtrasBatchImagesRequest = ExtrasBatchImagesParams


class ExtrasSingleImageResponse(BaseModel):
    html_info: str = ""
    image: str = ""


class ExtrasBatchImagesResponse(BaseModel):
    html_info: str = ""
    images: list[str] = Field(default_factory=list)


# -- png-info -------------------------------------------------------------------------------------------------


class PNGInfoRequest(_Lenient):
    image: str = ""


class PNGInfoResponse(BaseModel):
    info: str = ""
    items: dict[str, Any] = Field(default_factory=dict)
    parameters: dict[str, Any] = Field(default_factory=dict)


# -- progress -------------------------------------------------------------------------------------------------


class ProgressState(BaseModel):
    skipped: bool = False
    interrupted: bool = False
    stopping_generation: bool = False
    job: str = ""
    job_count: int = 0
    job_timestamp: str = "0"
    job_no: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0


class ProgressResponse(BaseModel):
    progress: float = 0.0
    eta_relative: float = 0.0
    state: ProgressState = Field(default_factory=ProgressState)
    current_image: str | None = None
    textinfo: str | None = None


class InternalProgressRequest(_Lenient):
    id_task: str | None = None
    id_live_preview: int = -1
    live_preview: bool = True


class InternalProgressResponse(BaseModel):
    active: bool = False
    queued: bool = False
    completed: bool = False
    progress: float | None = None
    eta: float | None = None
    live_preview: str | None = None
    id_live_preview: int | None = None
    textinfo: str | None = None


# -- lists ----------------------------------------------------------------------------------------------------


class SamplerItem(BaseModel):
    name: str
    aliases: list[str] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)


class SchedulerItem(BaseModel):
    name: str
    label: str
    aliases: list[str] | None = None
    default_rho: float = -1
    need_inner_model: bool = False


class UpscalerItem(BaseModel):
    name: str
    model_name: str | None = None
    model_path: str | None = None
    model_url: str | None = None
    scale: float | None = None


class LatentUpscalerModeItem(BaseModel):
    name: str


class SDModelItem(BaseModel):
    title: str
    model_name: str
    hash: str | None = None
    sha256: str | None = None
    filename: str
    config: str | None = None
    # Easel extras
    family: str | None = None
    format: str | None = None
    size: int | None = None


class SDVaeItem(BaseModel):
    model_name: str
    filename: str


class FaceRestorerItem(BaseModel):
    name: str
    cmd_dir: str | None = None


class PromptStyleItem(BaseModel):
    name: str
    prompt: str | None = None
    negative_prompt: str | None = None


class ScriptsList(BaseModel):
    txt2img: list[str] = Field(default_factory=list)
    img2img: list[str] = Field(default_factory=list)


# -- /sdapi/v2 ------------------------------------------------------------------------------------------------


class JobView(JobSummary):
    """A job as the v2 API shows it: the job record's public fields (:class:`JobSummary`, the same names) plus
    the ones it renames or derives."""

    model_config = ConfigDict(frozen=False)

    type: str = Field(description="the job kind: txt2img, img2img, ...")
    position: int | None = Field(None, description="0: running; 1: next; null: finished")
    eta: float | None = None
    error_status: int | None = Field(None, description="the HTTP status a synchronous call would have answered")
    error_field: str | None = Field(None, description="the request field a failed job's error names")
    result: dict[str, Any] | None = Field(None, description="images as URLs; info, infotexts, warnings...")
    params: dict[str, Any] | None = Field(None, description="the job payload (long strings such as images elided)")


class WorkerView(BaseModel):
    """One worker of the job queue (``GET /sdapi/v2/workers``)."""

    id: str
    node: str
    pid: int | None = None
    device: str
    state: str = Field(description="starting, idle, busy or dead (restarting)")
    loaded_models: list[str] = Field(default_factory=list)
    free_memory: int | None = Field(None, description="bytes free on its device, where the device tells")
    jobs_done: int = 0
    current_job: str | None = None
    restarts: int = Field(0, description="times the worker was lost and restarted")


class WorkerList(BaseModel):
    workers: list[WorkerView] = Field(default_factory=list)


class JobSubmitted(BaseModel):
    id: str
    status: str
    position: int | None = None


class JobList(BaseModel):
    jobs: list[JobView] = Field(default_factory=list)
    count: int = 0
