"""The FastAPI app: ``/sdapi/v1`` (A1111), ``/sdapi/v2`` (Easel jobs), ``/internal`` (UI), docs at ``/docs``.

Layers, outermost first: request context (``X-Request-Id``, ``X-Process-Time``, ``--api-log``, JSON 500 with
a request id), CORS (only with ``--cors-allow-origins``/``--cors-allow-origins-regex``), the cross-site request
refusal (:mod:`modules.api.cross_site`), HTTP Basic auth with the failed-login throttle (``--auth`` on every route,
``--api-auth`` on every route but the UI page), the request-size limit (``--max-request-mb``), the wait for the
warm-up (503 with ``Retry-After`` after a short wait), then the routes and the exception handlers that give every
error A1111's JSON shape. The Gradio UI, mounted at ``/`` by the composition root later, sits inside the same
layers.

Importing this module (and building the app) stays light: no torch, diffusers or gradio, so the server
answers within a second of start; the handlers that need the processing core wait for ``services.ready``
without blocking the event loop.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from modules.api import controlnet, internal, jobs_v2, sdapi_v1
from modules.api.auth import AuthPolicy, BasicAuthMiddleware, exposure_warnings, parse_credentials
from modules.api.cross_site import CrossSiteMiddleware
from modules.api.errors import install_error_schema, install_exception_handlers
from modules.api.middleware import BodyLimitMiddleware, ReadinessMiddleware, RequestContextMiddleware
from modules.services import Services

log = logging.getLogger(__name__)

API_DESCRIPTION = (
    "AUTOMATIC1111-compatible `/sdapi/v1` and Easel's job API `/sdapi/v2`, both over one persistent FIFO job "
    "queue. Errors use A1111's JSON shape `{error, detail, body, errors}`; `errors[].loc` names the field."
)


def create_app(services: Services) -> FastAPI:
    """Build the app for ``services``; the composition root adds the UI (or its loading page) at ``/``."""
    flags = services.settings.flags
    app = FastAPI(title="Easel", description=API_DESCRIPTION, version="1", docs_url="/docs", redoc_url="/redoc")
    app.state.services = services
    install_exception_handlers(app)
    install_error_schema(app)
    app.include_router(sdapi_v1.build_router(services))
    app.include_router(jobs_v2.build_router(services))
    app.include_router(internal.build_router(services))
    app.include_router(controlnet.build_router(services))
    # add_middleware puts each new layer outside the previous ones: innermost first.
    app.add_middleware(ReadinessMiddleware, ready=services.ready)
    app.add_middleware(BodyLimitMiddleware, limit_bytes=flags.max_request_mb << 20)
    policy = AuthPolicy(everything=tuple(parse_credentials(flags.auth, flag="auth")),
                        api=tuple(parse_credentials(flags.api_auth, flag="api_auth")))
    if policy.enabled:
        app.add_middleware(BasicAuthMiddleware, policy=policy)
    for warning in exposure_warnings(flags.listen, policy):
        log.warning(warning)
    origins = [origin.strip() for origin in (flags.cors_allow_origins or "").split(",") if origin.strip()]
    app.add_middleware(CrossSiteMiddleware, allowed_origins=origins,
                       allowed_origin_regex=flags.cors_allow_origins_regex)
    if origins or flags.cors_allow_origins_regex:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_origin_regex=flags.cors_allow_origins_regex,
                           allow_methods=["*"], allow_headers=["*"], allow_credentials=True,
                           expose_headers=["X-Process-Time", "X-Request-Id"])
    app.add_middleware(RequestContextMiddleware, log_requests=flags.api_log)
    return app
