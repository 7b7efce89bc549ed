"""The shared validation layer (StrictInput), the request-side CPU pool and the limits, without a server."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import Any

import pytest
from pydantic import Field, ValidationError

from modules.core.cpu_work import CpuWork
from modules.core.errors import UserInputError
from modules.core.limits import Limits
from modules.core.validation import Seed, StrictInput, unusable_values


class Inner(StrictInput):
    ratio: float = Field(0.5, ge=0.0, le=1.0)


class Outer(StrictInput):
    seed: Seed = -1
    count: int = Field(1, ge=1, le=10)
    free: dict[str, Any] = Field(default_factory=dict)
    items: list[Any] = Field(default_factory=list)
    inner: Inner = Field(default_factory=Inner)
    plain: float = 0.0


def _errors(data: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as caught:
        Outer.model_validate(data)
    return caught.value.errors()


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused_wherever_they_are(value: float) -> None:
    assert _errors({"plain": value})[0]["loc"] == ("plain",)
    assert _errors({"free": {"a": [1, {"b": value}]}})[0]["loc"] == ("free", "a", 1, "b")
    assert _errors({"items": [0, value]})[0]["loc"] == ("items", 1)
    assert _errors({"inner": {"ratio": value}})[0]["loc"] == ("inner", "ratio")


def test_integers_beyond_64_bits_and_lone_surrogates_are_refused() -> None:
    assert _errors({"free": {"n": 2**70}})[0]["loc"] == ("free", "n")
    assert "allowed" in _errors({"items": [-(2**64)]})[0]["msg"]
    assert _errors({"free": {"text": "ok \ud800"}})[0]["loc"] == ("free", "text")
    assert _errors({"free": {"\udfff": 1}})[0]["loc"] == ("free",)
    assert unusable_values({"a": "héllo", "b": [1, 2.5, True, None]}) == []


def test_range_errors_state_the_whole_range() -> None:
    assert "allowed: 1..10" in _errors({"count": 11})[0]["msg"]
    message = _errors({"seed": 2**70})[0]["msg"]
    assert "-1 (random) or 0..4294967295" in message
    assert "-1 (random)" in _errors({"seed": -2})[0]["msg"]
    assert "0.0..1.0" in _errors({"inner": {"ratio": 2}})[0]["msg"]
    assert Outer.model_validate({"seed": -1, "count": 10}).seed == -1


def test_models_built_on_it_inherit_it() -> None:
    from modules.core.settings import Options
    from modules.processing.extras import ExtrasSingleImageParams
    from modules.processing.params import Img2ImgParams, Txt2ImgParams

    for model, data in ((Txt2ImgParams, {"s_churn": math.nan}), (Img2ImgParams, {"comments": {"a": math.inf}}),
                        (ExtrasSingleImageParams, {"codeformer_weight": math.nan}),
                        (Options, {"an_extension_option": math.nan})):
        assert issubclass(model, StrictInput)
        with pytest.raises(ValidationError):
            model.model_validate(data)


def test_cpu_work_runs_on_its_own_bounded_threads() -> None:
    pool = CpuWork(2)
    lock = threading.Lock()
    state = {"running": 0, "most": 0, "names": set()}

    def work() -> None:
        with lock:
            state["running"] += 1
            state["most"] = max(state["most"], state["running"])
            state["names"].add(threading.current_thread().name)
        time.sleep(0.05)
        with lock:
            state["running"] -= 1

    async def main() -> None:
        await asyncio.gather(*(pool.run(work) for _ in range(8)))

    asyncio.run(main())
    pool.shutdown()
    assert state["most"] == 2
    assert all(name.startswith("easel-cpu") for name in state["names"])


def test_limits_name_the_field_and_the_flag() -> None:
    limits = Limits(max_output_pixels=100, max_job_images=5, max_steps=10, max_processor_res=64)
    with pytest.raises(UserInputError) as caught:
        limits.check_output_size("hr_scale", 20, 20)
    assert caught.value.field == "hr_scale" and "--max-output-pixels" in caught.value.message
    with pytest.raises(UserInputError, match="--max-job-images"):
        limits.check_images("n_iter", 6)
    with pytest.raises(UserInputError, match="1..10"):
        limits.check_steps("steps", 11)
    with pytest.raises(UserInputError, match="1..64"):
        limits.check_processor_res("controlnet_processor_res", 65)
    limits.check_output_size("width", 10, 10)
    limits.check_images("n_iter", 5)
