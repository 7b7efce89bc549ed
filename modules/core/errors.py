"""Errors as values users can act on.

Every error that reaches a user derives from :class:`EaselError`; the API turns ``status_code`` and
``to_detail()`` into an A1111-shaped JSON body, the UI shows ``message``. Anything else is an internal error
(5xx with a request id, logged with its traceback).
"""

from __future__ import annotations


class EaselError(Exception):
    """Base class of user-facing errors."""

    status_code: int = 400
    error_name: str = "EaselError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.field: str | None = None  # the request field at fault, where there is one

    def to_detail(self) -> dict[str, object]:
        return {"error": self.error_name, "detail": self.message}


class UserInputError(EaselError):
    """A request field holds a value Easel cannot use; names the field and what is allowed (HTTP 422)."""

    status_code = 422
    error_name = "ValidationError"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message

    def to_detail(self) -> dict[str, object]:
        return {
            "error": self.error_name,
            "detail": self.message,
            "errors": [{"loc": [self.field], "msg": self.reason, "type": "value_error"}],
        }


class NotFoundError(EaselError):
    """A named thing (model, sampler, script, job, file) does not exist (HTTP 404)."""

    status_code = 404
    error_name = "NotFound"


class ModelLoadError(EaselError):
    """A checkpoint cannot be recognised or loaded; the message says which file and why."""

    status_code = 422
    error_name = "ModelLoadError"


class NoModelError(EaselError):
    """No checkpoint is available at all; the message says where to put one (HTTP 503)."""

    status_code = 503
    error_name = "NoModel"


class StartingError(EaselError):
    """The part of Easel a request needs is still starting (HTTP 503 with ``Retry-After``); asking again in
    ``retry_after`` seconds gets the real answer."""

    status_code = 503
    error_name = "Starting"
    retry_after: int = 5  # seconds; the class value is the default the readiness middleware sends

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnsupportedError(EaselError):
    """The requested feature cannot run on this platform or install (e.g. TensorRT without NVIDIA)."""

    status_code = 501
    error_name = "Unsupported"


class PermissionDeniedError(EaselError):
    """The action is disabled by a flag (e.g. server-stop without --api-server-stop) (HTTP 403)."""

    status_code = 403
    error_name = "Forbidden"


class JobCancelled(Exception):
    """Raised inside a running job when it is cancelled; the worker marks the job cancelled."""
