"""``backend: auto`` on a CPU: calibration on the jobs' own calls, a background export that joins when ready, the
export and the measurements reused after a restart. The tiny UNet stands in for a large one (threshold lowered);
ONNX Runtime is the exported runtime (it exports the tiny model in seconds)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from modules.backends import auto
from modules.backends.adaptive import (
    CHECK_CROP,
    REFERENCE,
    ROUTE_TOLERANCE,
    AdaptiveUNet,
    AdaptiveVae,
    CalibrationStore,
    Route,
    RoutePolicy,
    torch_unet_route,
)
from modules.backends.auto import CpuFeatures, plan_cpu_routes
from modules.backends.base import ComponentWrapper
from modules.backends.onnxruntime_backend import OnnxRuntimeBackend
from modules.backends.setup import ExecutionSetup
from modules.core.settings import CmdFlags, Options, Settings
from modules.devices.select import select_device
from modules.models.catalog import CheckpointCatalog, HashCache
from modules.models.manager import ModelManager
from modules.processing.engine import StepControl
from modules.processing.params import Txt2ImgParams
from modules.processing.processor import Processor
from modules.processing.run import ProcessingRun
from modules.processing.samplers import build_default_registry

SD15_PARAMS = 859_520_964
NO_BF16 = CpuFeatures.from_flags({"avx2", "fma"})
BF16 = CpuFeatures.from_flags({"avx2", "fma", "avx512f", "avx512_bf16"})
PIXEL_TOLERANCE = 2  # fp32 runtimes against PyTorch fp32, as in test_backends.py


def _services(tiny_models_dir: Path, data: Path, precision: str = "full") -> Any:
    """``full`` is --precision full (fp32 routes only); ``autocast`` (the default start) lets auto add bf16."""
    settings = Settings(CmdFlags(data_dir=data, precision=precision, no_half=precision == "full"), Options())
    catalog = CheckpointCatalog(tiny_models_dir / "Stable-diffusion", HashCache(data / "hashes.json"))
    catalog.refresh()
    device = select_device(use_cpu=True, device_id=None, precision="full", no_half=True)
    manager = ModelManager(catalog, device)
    processor = Processor(samplers=build_default_registry(), model_provider=lambda run: manager.current)
    return SimpleNamespace(settings=settings, device=device, manager=manager,
                           generation=SimpleNamespace(processor=processor, status_texts=[]), extensions={})


def install(services: Any) -> ExecutionSetup:
    """The composition root's wiring of the execution setup (webui.wire_processing_core, step 3)."""
    setup = ExecutionSetup(services.settings, services.device)
    services.manager.on_model_loaded(setup.on_model_loaded)
    services.generation.processor.prompt_preprocessors.append(setup.infotext_preprocessor)
    services.generation.status_texts.append(lambda: setup.status_text(services.manager.current))
    return setup


def _generate(services: Any, on_step: Any = None) -> tuple[np.ndarray, str]:
    params = Txt2ImgParams(prompt="a red circle", steps=4, width=64, height=64, seed=5, sampler_name="Euler")
    control = StepControl(on_step=on_step) if on_step is not None else None
    result = services.generation.processor.process(ProcessingRun(params, services.settings.options), control)
    return np.asarray(result.images[0].convert("RGB")), result.infotexts[0]


def _max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


@pytest.fixture
def large_model_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiny UNet counts as large; ONNX Runtime is the runtime auto may export to; no bf16 route (the tiny
    random model's bf16 error is beyond the tolerance anyway), so the fp32 outputs can be compared pixel-exactly."""
    monkeypatch.setattr(auto, "AUTO_MIN_UNET_PARAMS", 0)
    monkeypatch.setattr("modules.backends.setup.installed_backends", lambda: {"onnxruntime"})
    monkeypatch.setattr("modules.backends.setup.probe_cpu", lambda: NO_BF16)


@pytest.fixture(scope="module")
def plain_image(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """The same job on plain diffusers PyTorch fp32 (auto keeps the tiny model there by default)."""
    services = _services(tiny_models_dir, tmp_path_factory.mktemp("plain"))
    install(services)
    services.manager.ensure_loaded("tiny-sd")
    assert not isinstance(services.manager.current.pipe.unet, ComponentWrapper)
    return _generate(services)[0]


def test_plan_names_the_routes_per_cpu() -> None:
    on_bf16 = plan_cpu_routes(unet_params=SD15_PARAMS, cpu=BF16, installed={"openvino", "onnxruntime"})
    assert on_bf16 is not None and on_bf16.bf16 and on_bf16.export == ("openvino", "bf16")
    no_runtime = plan_cpu_routes(unet_params=SD15_PARAMS, cpu=BF16, installed=set())
    assert no_runtime is not None and no_runtime.bf16 and no_runtime.export is None  # torch bf16 at once
    without = plan_cpu_routes(unet_params=SD15_PARAMS, cpu=NO_BF16, installed={"openvino", "onnxruntime"})
    assert without is not None and not without.bf16 and without.export == ("onnxruntime", "fp32")
    assert plan_cpu_routes(unet_params=SD15_PARAMS, cpu=NO_BF16, installed=set()) is None  # nothing beats torch
    assert plan_cpu_routes(unet_params=SD15_PARAMS, cpu=BF16, installed={"openvino"}, precision="fp32") == \
        auto.AutoPlan(False, ("openvino", "fp32"), auto.AutoPlan.__doc__ and plan_cpu_routes(
            unet_params=SD15_PARAMS, cpu=BF16, installed={"openvino"}, precision="fp32").reason)  # type: ignore
    assert plan_cpu_routes(unet_params=2_800_000, cpu=BF16, installed={"openvino"}) is None  # embedded: plain


def test_policy_times_every_new_route_checks_it_once_and_then_runs_the_fastest(tmp_path: Path) -> None:
    """An unchecked route (one the crop check could not run) is checked beside the reference on the call; checked
    routes are timed one per call, on calls the job needs anyway; then the fastest runs alone."""
    store = CalibrationStore(tmp_path / "calibration.json")
    policy = RoutePolicy(store, "model")
    ready = [REFERENCE, "torch:bf16"]
    first = policy.decide("unet", "s", ready)
    assert first.run == [REFERENCE, "torch:bf16"] and first.returned == REFERENCE and first.calibrating
    store.set_error("model|unet", "torch:bf16", ROUTE_TOLERANCE / 2)
    store.add_time("model|unet|s", REFERENCE, 4.0)
    store.add_time("model|unet|s", "torch:bf16", 1.0)
    assert policy.decide("unet", "s", ready).run == ["torch:bf16"]
    # a route that joins later is timed on the next call (already checked here: only timed), then wins or loses
    store.set_error("model|unet", "openvino:bf16", 0.001)
    joined = policy.decide("unet", "s", [*ready, "openvino:bf16"])
    assert joined.run == ["openvino:bf16"] and joined.calibrating
    store.add_time("model|unet|s", "openvino:bf16", 3.0)
    assert policy.decide("unet", "s", [*ready, "openvino:bf16"]).run == ["torch:bf16"]
    # a route outside the tolerance is never used, however fast
    store.set_error("model|unet", "onnxruntime:fp32", ROUTE_TOLERANCE * 2)
    store.add_time("model|unet|s", "onnxruntime:fp32", 0.1)
    assert policy.decide("unet", "s", [*ready, "onnxruntime:fp32"]).run == ["torch:bf16"]
    store.save()
    reloaded = RoutePolicy(CalibrationStore(tmp_path / "calibration.json"), "model")
    assert reloaded.decide("unet", "s", ready).run == ["torch:bf16"]  # measurements survive a restart
    other = reloaded.decide("unet", "other-shape", ready)
    # a new shape is timed again, one route per call, the likely fastest first (a converted copy before fp32)
    assert other.calibrating and other.run == ["torch:bf16"]
    reloaded.store.add_time("model|unet|other-shape", "torch:bf16", 1.0)
    assert reloaded.decide("unet", "other-shape", ready).run == [REFERENCE]


def test_a_route_judged_by_its_cold_first_call_is_timed_again(tmp_path: Path) -> None:
    """The fp32 reference's first call of a process pages the weights in (SD 1.5, 512²: 24.0 s, then 10.7 s): it is
    timed once more before the bf16 copy (11.4 s) wins, and the route that then loses is retried once as well
    (its one timing was cold too). A warm single timing is not retried."""
    store = CalibrationStore(tmp_path / "calibration.json")
    policy = RoutePolicy(store, "model")
    ready = [REFERENCE, "torch:bf16"]
    store.set_error("model|unet", "torch:bf16", 0.01)
    store.add_time("model|unet|s", REFERENCE, 24.0, cold=True)
    store.add_time("model|unet|s", "torch:bf16", 11.4, cold=True)
    again = policy.decide("unet", "s", ready)
    assert again.run == [REFERENCE] and again.returned == REFERENCE  # one call, the job's own next step
    store.add_time("model|unet|s", REFERENCE, 10.7)
    retry = policy.decide("unet", "s", ready)
    assert retry.run == ["torch:bf16"]  # now the loser, timed once: one more try
    store.add_time("model|unet|s", "torch:bf16", 11.8)
    settled = policy.decide("unet", "s", ready)
    assert settled.run == [REFERENCE] and not settled.calibrating
    # far slower routes (emulated bf16 on a CPU without it: ~80x) are not tried again
    store.add_time("model|unet|s", "openvino:bf16", 900.0)
    store.set_error("model|unet", "openvino:bf16", 0.01)
    assert policy.decide("unet", "s", [*ready, "openvino:bf16"]).run == [REFERENCE]
    # a single timing taken warm (the route had already run in its process) is final: after a restart the fp32
    # reference, warm-timed at 10.7 s, is not run again beside an export timed at 4.43 s
    store.set_error("model|unet", "openvino:bf16", 0.008)
    store.add_time("model|unet|t", REFERENCE, 10.7)
    store.add_time("model|unet|t", "torch:bf16", 11.4, cold=True)
    store.add_time("model|unet|t", "openvino:bf16", 4.43)
    store.save()
    restarted = RoutePolicy(CalibrationStore(tmp_path / "calibration.json"), "model")
    assert restarted.decide("unet", "t", [*ready, "openvino:bf16"]).run == ["openvino:bf16"]
    assert restarted.store.cold("model|unet|t", "torch:bf16") and not restarted.store.cold("model|unet|t", REFERENCE)


def test_calibration_picks_the_fastest_measured_route_and_the_export_joins_in_the_background(
        tiny_models_dir: Path, tmp_path: Path, large_model_policy: None, plain_image: np.ndarray,
        monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()
    real_build = OnnxRuntimeBackend.build_graphs

    def gated_build(self: OnnxRuntimeBackend, *args: Any, **kwargs: Any) -> Any:
        gate.wait(120)  # holds the export back while the first job runs
        return real_build(self, *args, **kwargs)

    monkeypatch.setattr(OnnxRuntimeBackend, "build_graphs", gated_build)
    data = tmp_path / "data"
    services = _services(tiny_models_dir, data)
    setup = install(services)
    loaded = services.manager.ensure_loaded("tiny-sd")
    record = setup.applied[loaded.pipe]
    try:
        assert record.errors == [] and record.backend == "auto" and record.adaptive is not None
        unet = loaded.pipe.unet
        assert isinstance(unet, AdaptiveUNet) and list(unet.routes) == [REFERENCE]
        texts: list[str | None] = []
        status = services.generation.status_texts[0]
        before, info_before = _generate(services, lambda step, total, latents: texts.append(status()))
        # while the export runs the job ran on PyTorch fp32, said so, and named no backend (plain diffusers)
        assert texts and all("ONNX Runtime fp32 export running in the background" in str(text) for text in texts)
        assert all(str(text).startswith("UNet on torch fp32") for text in texts)
        assert "Backend:" not in info_before
        assert _max_diff(before, plain_image) == 0
        gate.set()
        assert record.adaptive.export is not None and record.adaptive.export.wait(120), record.adaptive.export.error
        assert set(unet.routes) == {REFERENCE, "onnxruntime:fp32"}
        after, info_after = _generate(services)
        assert _max_diff(after, before) <= PIXEL_TOLERANCE, "the switch changed the picture beyond the tolerance"
        measured = json.loads((data / "cache" / "calibration.json").read_text())
        unet_shapes = {key: routes for key, routes in measured["times"].items() if "|unet|" in key}
        assert len(unet_shapes) == 1
        times = next(iter(unet_shapes.values()))
        assert set(times) == {REFERENCE, "onnxruntime:fp32"}
        fastest = min(times, key=lambda name: min(times[name]))  # the policy compares the fastest call of each
        assert unet.last_route == fastest, f"ran {unet.last_route} ({unet.used}) though {times} were measured"
        expected_info = None if fastest == REFERENCE else "Backend: onnxruntime fp32"
        assert expected_info is None or expected_info in info_after
        assert all(error <= ROUTE_TOLERANCE for error in measured["errors"][next(iter(measured["errors"]))].values())
        exported = {path: path.stat().st_mtime_ns for path in (data / "cache" / "onnx").rglob("*.onnx")}
        assert len(exported) == 2  # UNet and VAE decoder
    finally:
        gate.set()
        record.remove(loaded.pipe)
    assert not isinstance(loaded.pipe.unet, ComponentWrapper)

    # a restart: same data dir, new process state. The export is read back (not written again) and the saved
    # measurements decide at once: no reference run at the calibrated shape.
    monkeypatch.setattr(OnnxRuntimeBackend, "build_graphs", real_build)
    restarted = _services(tiny_models_dir, data)
    setup2 = install(restarted)
    loaded2 = restarted.manager.ensure_loaded("tiny-sd")
    record2 = setup2.applied[loaded2.pipe]
    try:
        assert record2.adaptive is not None and record2.adaptive.export is not None
        assert record2.adaptive.export.wait(120)
        assert {path: path.stat().st_mtime_ns for path in exported} == exported, "the export was written again"
        unet2 = loaded2.pipe.unet
        calls: list[list[str]] = []
        policy = unet2.policy
        real_decide = policy.decide
        monkeypatch.setattr(policy, "decide", lambda *args: calls.append(real_decide(*args).run) or real_decide(*args))
        again, _ = _generate(restarted)
        # the UNet calls: no calibration (one route a call, never the reference beside another), on the fastest
        # route; the policy's one allowed exception is a single retry of each other route timed only once
        unet_calls = calls[:-1]
        assert unet_calls and all(len(run) == 1 for run in unet_calls), calls
        others = [run[0] for run in unet_calls if run != [fastest]]
        assert len(others) == len(set(others)), calls
        assert _max_diff(again, after) <= PIXEL_TOLERANCE
    finally:
        record2.remove(loaded2.pipe)


def test_bf16_route_is_checked_against_fp32_on_the_same_inputs(tiny_models_dir: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """On a native-bf16 CPU the bf16 copy runs from the first call; its error against fp32 is measured on that
    call, and it is used only within the tolerance (the tiny random model is measured, whatever it gives)."""
    monkeypatch.setattr(auto, "AUTO_MIN_UNET_PARAMS", 0)
    monkeypatch.setattr("modules.backends.setup.installed_backends", lambda: set())
    monkeypatch.setattr("modules.backends.setup.probe_cpu", lambda: BF16)
    services = _services(tiny_models_dir, tmp_path / "data", precision="autocast")
    setup = install(services)
    loaded = services.manager.ensure_loaded("tiny-sd")
    record = setup.applied[loaded.pipe]
    try:
        unet = loaded.pipe.unet
        assert isinstance(unet, AdaptiveUNet) and set(unet.routes) == {REFERENCE, "torch:bf16"}, (record, unet.dtype)
        assert record.adaptive is not None and record.adaptive.export is None
        _, info = _generate(services)
        errors = json.loads((tmp_path / "data" / "cache" / "calibration.json").read_text())["errors"]
        unet_error = next(value for key, value in errors.items() if key.endswith("|unet"))["torch:bf16"]
        if unet_error <= ROUTE_TOLERANCE:
            assert unet.main_route().name in (REFERENCE, "torch:bf16")
        else:
            assert unet.last_route == REFERENCE and "bf16" not in info.split("VAE backend")[0]
        sample = torch.randn(2, 4, 8, 8)
        states = torch.randn(2, 77, 32)
        residuals = {"mid_block_additional_residual": torch.full((2, 64, 4, 4), 0.5)}
        with torch.no_grad():
            out = unet(sample, 10, states, **residuals).sample
            expected = unet.original(sample, 10, states, **residuals).sample
        assert unet.last_route == REFERENCE and torch.equal(out, expected)  # ControlNet inputs: the fp32 original
    finally:
        record.remove(loaded.pipe)


def test_a_new_route_is_checked_on_a_crop_and_no_full_size_call_runs_twice(tiny_models_dir: Path, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The first job on a fresh install: the bf16 copy is checked against fp32 on a 16² corner of the first call's
    latents (UNet and VAE), and every full-size call then runs one route, so the job computes what plain diffusers
    computes plus two small crops, instead of an extra full UNet step and VAE decode per new route."""
    monkeypatch.setattr(auto, "AUTO_MIN_UNET_PARAMS", 0)
    monkeypatch.setattr("modules.backends.setup.installed_backends", lambda: set())
    monkeypatch.setattr("modules.backends.setup.probe_cpu", lambda: BF16)
    data = tmp_path / "data"
    services = _services(tiny_models_dir, data, precision="autocast")
    setup = install(services)
    loaded = services.manager.ensure_loaded("tiny-sd")
    record = setup.applied[loaded.pipe]
    try:
        unet, vae = loaded.pipe.unet, loaded.pipe.vae
        assert isinstance(unet, AdaptiveUNet) and isinstance(vae, AdaptiveVae)
        calls: list[tuple[str, str, tuple[int, ...]]] = []
        for component, wrapper in (("unet", unet), ("vae", vae)):
            for name, route in wrapper.routes.items():
                def recorded(*args: Any, _run: Any = route.run, _name: str = name, _component: str = component,
                             **kwargs: Any) -> Any:
                    calls.append((_component, _name, tuple(args[0].shape)))
                    return _run(*args, **kwargs)

                route.run = recorded
        params = Txt2ImgParams(prompt="a red circle", steps=3, width=256, height=256, seed=5, sampler_name="Euler")
        services.generation.processor.process(ProcessingRun(params, services.settings.options))
        crop = (CHECK_CROP, CHECK_CROP)
        for component in ("unet", "vae"):
            mine = [(name, shape) for owner, name, shape in calls if owner == component]
            checks = [(name, shape) for name, shape in mine if shape[-2:] == crop]
            assert sorted(name for name, _ in checks) == sorted([REFERENCE, "torch:bf16"]), mine
            assert mine[:2] == checks, "the crop check comes before the first full-size call"
            full = [shape for _, shape in mine if shape[-2:] != crop]
            assert len(full) == {"unet": 3, "vae": 1}[component], "each full-size call ran one route"
            assert all(shape[-1] > CHECK_CROP for shape in full)
        errors = json.loads((data / "cache" / "calibration.json").read_text())["errors"]
        assert {key.rsplit("|", 1)[1] for key in errors} == {"unet", "vae"}
        assert all(set(value) == {"torch:bf16"} for value in errors.values())
    finally:
        record.remove(loaded.pipe)


@pytest.mark.parametrize("export_error", [0.0, 0.5])
def test_a_checked_export_releases_the_bf16_bridge(tiny_models_dir: Path, tmp_path: Path,
                                                   export_error: float) -> None:
    """The bf16 copy bridges until the export joins; once the export has passed its check (on a crop of the next
    call), the copy is dropped and its memory with it. An export outside the tolerance leaves the copy in place.
    The stand-in export is the fp32 UNet itself, scaled to give the wanted error."""
    import gc
    import weakref

    from diffusers import UNet2DConditionModel

    original = UNet2DConditionModel.from_pretrained(str(tiny_models_dir / "Stable-diffusion" / "tiny-sd" / "unet"))
    store = CalibrationStore(tmp_path / "calibration.json")
    bridge = torch_unet_route(original, torch.bfloat16)
    unet = AdaptiveUNet(original, RoutePolicy(store, "model"), [torch_unet_route(original, torch.float32), bridge])
    copy_ref = weakref.ref(next(cell.cell_contents for cell in bridge.run.__closure__ or ()
                                if isinstance(cell.cell_contents, torch.nn.Module)))  # the bf16 copy it holds
    del bridge
    sample, states = torch.randn(2, 4, 32, 32), torch.randn(2, 77, 32)
    with torch.no_grad():
        unet(sample, 10, states)  # bf16 checked on the crop, then timed
        scale = 1.0 + export_error

        def exported(sample: torch.Tensor, timestep: Any, states: torch.Tensor, **kwargs: Any) -> Any:
            out = original(sample, timestep, states, return_dict=False)[0]
            return (out * scale,)

        unet.add_route(Route("openvino:bf16", exported, graph=True))
        assert "torch:bf16" in unet.routes, "not released before the export is checked"
        unet(sample, 10, states)  # the export's crop check
    gc.collect()
    if export_error <= ROUTE_TOLERANCE:
        assert set(unet.routes) == {REFERENCE, "openvino:bf16"} and copy_ref() is None
    else:
        assert set(unet.routes) == {REFERENCE, "torch:bf16", "openvino:bf16"} and copy_ref() is not None
    # a restart: the export's check is on record, so the copy goes as soon as the export joins
    again = AdaptiveUNet(original, RoutePolicy(CalibrationStore(tmp_path / "calibration.json"), "model"),
                         [torch_unet_route(original, torch.float32), torch_unet_route(original, torch.bfloat16)])
    again.add_route(Route("openvino:bf16", exported, graph=True))
    assert ("torch:bf16" in again.routes) is (export_error > ROUTE_TOLERANCE)


def test_job_progress_text_carries_the_status_sources() -> None:
    """The generation service joins its status sources into each step's ``textinfo`` (the job's progress text)."""
    from modules.processing.service import _control_for

    reports: list[dict[str, Any]] = []
    ctx = SimpleNamespace(report=lambda step, total, **kwargs: reports.append({"step": step, **kwargs}),
                          should_stop=lambda: False, consume_skip=lambda: False)
    sources = [lambda: "UNet on torch bf16; OpenVINO bf16 export running in the background (12 s)", lambda: None]
    control = _control_for(ctx, Settings(CmdFlags(), Options()), sources)
    control.on_step(1, 4, torch.zeros(1, 4, 8, 8))
    assert reports[0]["textinfo"] == "UNet on torch bf16; OpenVINO bf16 export running in the background (12 s)"
    _control_for(ctx, Settings(CmdFlags(), Options()), [lambda: None]).on_step(2, 4, torch.zeros(1, 4, 8, 8))
    assert reports[1]["textinfo"] is None
