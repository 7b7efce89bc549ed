"""Schemathesis drives every operation of the app's own OpenAPI schema, with valid and invalid data: no answer
may be a 5xx, and every answer must match what the schema declares (status code, content type, body schema,
including the A1111 error body). A hook (``cap_sizes``) caps sizes (pixels, steps, images) so that the examples
that are valid generation requests finish in the suite's time on a CPU; everything else is left to the generator.

The server is its own (not the session's shared one): the fuzzer changes options."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import webui

SKIPPED_PATHS = ("/sdapi/v1/unload-checkpoint", "/sdapi/v1/reload-checkpoint", "/sdapi/v1/server-kill",
                 "/sdapi/v1/server-stop", "/sdapi/v1/server-restart")
"""Model unload/reload jobs take seconds each and leave the fuzz server without a model; server control is
refused (403) without --api-server-stop, and a mistake there would end the test run."""
CAPS = {"width": 64, "height": 64, "steps": 1, "batch_size": 1, "n_iter": 1, "hr_second_pass_steps": 1,
        "hr_resize_x": 0, "hr_resize_y": 0, "firstphase_width": 0, "firstphase_height": 0}
MAX_EXAMPLES = 8
RESULTS: dict[str, int] = {"requests": 0, "server_errors": 0}


GENERATION_PATHS = ("/sdapi/v1/txt2img", "/sdapi/v1/img2img", "/sdapi/v2/jobs")


def cap_sizes(case: Any) -> None:
    """The size cap, applied to every generated case before it is sent: generation requests (the v1 body and
    the v2 envelope's params) get small sizes where they ask for larger valid ones or rely on the 512x512,
    50-step defaults; invalid values are left alone, so negative examples stay negative."""
    body = case.body
    if case.path not in GENERATION_PATHS or not isinstance(body, dict):
        return
    for holder in (body, body.get("params")):
        if not isinstance(holder, dict):
            continue
        for key, cap in CAPS.items():
            value = holder.get(key, cap + 1)
            if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= cap < value <= 4096 \
                    and value == int(value):
                holder[key] = cap
        holder.pop("enable_hr", None)
        holder.pop("script_name", None)
        holder.pop("alwayson_scripts", None)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory, tiny_models_dir: Any, api: Any,
                single_threaded_torch: None) -> Iterator[Any]:
    services = api.make_services(tmp_path_factory.mktemp("fuzz-data"), tiny_models_dir)
    app = webui.create_app(services)
    services.queue.start()
    warm = threading.Thread(target=webui.warm_up, args=(services,), name="easel-warmup-fuzz", daemon=True)
    running = api.start_server(services, app)
    warm.start()
    warm.join(180)
    assert services.ready.is_set() and services.startup_error is None
    yield running
    api.shutdown(running)


def _check(case: Any) -> None:
    cap_sizes(case)
    started = time.monotonic()
    response = case.call(timeout=60)
    RESULTS["requests"] += 1
    if response.status_code >= 500:
        RESULTS["server_errors"] += 1
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                              content_type_conformance, response_schema_conformance])
    assert time.monotonic() - started < 60, f"{case.method} {case.path} took too long"


@pytest.mark.slow
def test_api_answers_as_its_schema_says(fuzz_server: Any) -> None:
    """Every operation, positive and negative examples (``MAX_EXAMPLES`` each, reproducible), in one test:
    hypothesis drives each operation's strategy directly (schemathesis' pytest plugin is not used)."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_server.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [operation for operation in operations if operation.path not in SKIPPED_PATHS]
    assert len(operations) > 40
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run = given(case=operation.as_strategy(generation_mode=mode))(_check)
            try:
                settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                         phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))(run)()
            except Unsatisfiable:  # no invalid input exists for an operation without parameters
                assert mode is GenerationMode.NEGATIVE, operation.path
    print(f"\nfuzz: {len(operations)} operations, {RESULTS['requests']} requests, "
          f"{RESULTS['server_errors']} x 5xx")
    assert RESULTS["server_errors"] == 0
