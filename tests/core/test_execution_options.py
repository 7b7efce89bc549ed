"""The execution/memory/quantization options are typed: defaults, bounds, and a 422 naming the key when wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from modules.core.errors import UserInputError
from modules.core.settings import Options, Settings, load_options


def test_execution_defaults_and_sections() -> None:
    options = Options()
    assert options.backend == "auto" and options.execution_precision == "auto"
    assert options.execution_shape_policy == "dynamic" and options.openvino_device == "CPU"
    assert options.torch_compile == "off" and options.memory_strategies == ["auto"]
    assert options.token_merging_ratio == 0.0 and options.quantization == "none"
    sections = Options.sections()
    assert {"backend", "execution_precision", "execution_shape_policy", "openvino_device",
            "openvino_weight_compression", "torch_compile"} <= set(sections["Execution"])
    assert {"memory_strategies", "token_merging_ratio", "quantization"} <= set(sections["Memory"])
    assert all(Options.model_fields[key].title for key in sections["Execution"] + sections["Memory"]
               if key != "cross_attention_optimization")


@pytest.mark.parametrize("key, value", [
    ("backend", "cuda"), ("execution_precision", "int8"), ("execution_shape_policy", "static-2-512"),
    ("openvino_device", "TPU"), ("torch_compile", "fast"), ("token_merging_ratio", 0.95),
    ("token_merging_ratio", -0.1), ("quantization", "int3"), ("memory_strategies", ["bogus"]),
    ("openvino_weight_compression", "int2")])
def test_bad_execution_option_names_the_key(tmp_path: Path, key: str, value: object) -> None:
    settings = Settings.load(["--data-dir", str(tmp_path)], {})
    with pytest.raises(UserInputError) as info:
        settings.update_options({key: value})
    assert info.value.field.split(".")[0] == key
    assert getattr(settings.options, key) == getattr(Options(), key)
    assert not (tmp_path / "config.json").exists(), "a refused change must not be saved"


def test_good_execution_options_round_trip(tmp_path: Path) -> None:
    settings = Settings.load(["--data-dir", str(tmp_path)], {})
    settings.update_options({"backend": "openvino", "execution_shape_policy": "static-b2-768x512",
                             "openvino_device": "GPU.1", "memory_strategies": "vae_tiling",
                             "token_merging_ratio": 0.3, "quantization": "quanto-int8"})
    options, warnings = load_options(tmp_path / "config.json")
    assert warnings == []
    assert options.backend == "openvino" and options.execution_shape_policy == "static-b2-768x512"
    assert options.openvino_device == "GPU.1" and options.memory_strategies == ["vae_tiling"]
    assert options.token_merging_ratio == 0.3 and options.quantization == "quanto-int8"


def test_rest_options_answers_422_naming_the_key(tmp_path: Path, tiny_models_dir: Path) -> None:
    import asyncio

    import httpx

    import webui

    settings = Settings.load(["--data-dir", str(tmp_path), "--models-dir", str(tiny_models_dir), "--nowebui"], {})
    services = webui.build_services(settings)
    services.ready.set()  # options are validated without a model: skip the warm-up the readiness layer waits for

    async def exchange() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=webui.create_app(services))  # no lifespan: no warm-up, no model
        async with httpx.AsyncClient(transport=transport, base_url="http://easel") as client:
            return [await client.post("/sdapi/v1/options", json={"backend": "cuda"}),
                    await client.post("/sdapi/v1/options", json={"token_merging_ratio": 2}),
                    await client.post("/sdapi/v1/options", json={"backend": "torch"}),
                    await client.get("/sdapi/v1/options")]

    try:
        bad_backend, bad_ratio, good, current = asyncio.run(exchange())
    finally:
        services.queue.stop(5)
        services.job_store.close()
    assert bad_backend.status_code == 422 and bad_backend.json()["errors"][0]["loc"] == ["backend"]
    assert bad_ratio.status_code == 422 and bad_ratio.json()["errors"][0]["loc"] == ["token_merging_ratio"]
    assert good.status_code == 200 and current.json()["backend"] == "torch"
