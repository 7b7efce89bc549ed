"""``backend: auto`` on a CPU: every UNet call and VAE decode runs on the fastest *ready* path, by measured time.

A path (:class:`Route`) is one way of running a component: ``torch:fp32`` (the loaded diffusers module, always
there), ``torch:bf16`` (a bf16 copy, made at load on CPUs with native bf16: no export, usable at once) and the
exported runtimes (``openvino:bf16`` on native-bf16 CPUs, ``onnxruntime:fp32`` / ``openvino:fp32`` elsewhere),
which a background thread (:class:`BackgroundExport`) exports, or reads from the disk cache, while jobs run. A
route joins when it is ready; nothing waits for it. The bf16 copies bridge until then: once an exported route has
joined and passed its accuracy check they are released (:meth:`AdaptiveComponent.release_bridges`).

Calibration happens on the jobs' own calls, per input shape, one route per call: a call at a shape where a usable
route has no measurement yet runs on that route alone and is timed (its output is the step's output), so timing
costs no extra computation, once per CPU, model and shape. A route is also checked once per model against PyTorch
fp32 on the same inputs before it is used: its relative L2 error (``‖out − ref‖ / ‖ref‖``) must stay within
:data:`ROUTE_TOLERANCE`, else it is never used for that model. The check runs the reference and the new route on
a :data:`CHECK_CROP`-square corner of the call's latents (the real conditioning and timestep), so it costs a small
fraction of a step; where a route cannot take the crop (a static-shape export), it is checked beside the reference
on the full call instead. Measurements go to ``<cache>/calibration.json`` (atomic writes), keyed by the CPU
(model name, flags, threads), the model hash, the component and the shape, so a restart starts from them.
Calls an exported graph cannot take (ControlNet residuals, LoRA scales or adapters, timestep conditions) and any
call to a bf16 copy with such inputs run on the original fp32 module.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from modules.backends.base import ComponentWrapper, unet_call_inputs, unet_output, unsupported_unet_inputs
from modules.core.atomic import atomic_write_text

log = logging.getLogger(__name__)

#: Largest relative L2 error of a route's output against PyTorch fp32 on the same inputs (one call). bf16 keeps 8
#: mantissa bits (relative rounding 2^-9 = 0.2 % per value), and the error grows through a deep network: measured
#: on a random-weight SD 1.5-layout UNet, PyTorch bf16 1.3 % and OpenVINO's bf16 hint (which also runs softmax and
#: normalisation in bf16) 3.2 %; the VAE decoder 1.2 % on both (docs/BENCHMARKS.md). A route above this (a model
#: that overflows or cancels badly in bf16) is never used for that model.
ROUTE_TOLERANCE = 0.05
#: A route's first call in a process includes its warm-up (allocations, kernel choice, the weights paged in from
#: the model file): when its only timing was such a cold call and is within this factor of the best, it is timed
#: once more before the decision, on a call the job needs anyway. A warm single timing is taken as it is (a retry
#: would cost a full step, and page the fp32 weights in, for nothing). Measured on SD 1.5 at 512²: the fp32
#: reference's first call took 24.0 s and its next 10.7 s, while the bf16 copy's first took 11.4 s; a factor of
#: 1.25 left fp32 judged by its cold call and the job ran on the slower bf16 copy.
RETIME_FACTOR = 2.5
#: Timings kept per route and shape. The fastest of them decides: on a shared machine other processes only ever
#: add time, so the minimum is the closest to what the route costs.
KEEP_TIMES = 5
REFERENCE = "torch:fp32"
#: Side of the latent crop the accuracy check runs on (16: a 128² image; divisible by the UNet's 8x downsampling).
#: On SD 1.5 at 512² a full-size check cost a whole extra fp32 step (10.7 s) per new route and an extra fp32 VAE
#: decode (18 s on its cold first call) in the first job; on the crop both take a sixteenth of the pixels.
CHECK_CROP = 16


@dataclass
class Route:
    """One way to run a component. ``run`` takes the component's call arguments and returns its output."""

    name: str  # "<backend>:<precision>"
    run: Callable[..., Any]
    graph: bool = False  # an exported graph: cannot take ControlNet residuals, LoRA or timestep conditions

    @property
    def backend(self) -> str:
        return self.name.partition(":")[0]

    @property
    def precision(self) -> str:
        return self.name.partition(":")[2]

    @property
    def label(self) -> str:
        """How the infotext and progress text name it: ``openvino bf16``."""
        return f"{self.backend} {self.precision}"


def cpu_signature(flags: frozenset[str], threads: int) -> str:
    """Calibrations are only valid on the CPU (and thread count) that measured them."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        import platform

        model = platform.processor()
    digest = hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[:8]
    return f"{model}|{digest}|t{threads}"


class CalibrationStore:
    """Measured seconds per call and accuracy per route, persisted as JSON (written atomically)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.data: dict[str, Any] = {"times": {}, "errors": {}}
        if path is not None and path.exists():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(loaded.get("times"), dict) and isinstance(loaded.get("errors"), dict):
                    self.data = loaded
            except (OSError, ValueError, AttributeError):
                log.warning("ignoring unreadable calibration file %s", path)

    def times(self, key: str, route: str) -> list[float]:
        with self.lock:
            return list(self.data["times"].get(key, {}).get(route, []))

    def add_time(self, key: str, route: str, seconds: float, *, cold: bool = False) -> None:
        """``cold``: the route's first call in its process (weights paged in from the model file, kernels chosen)."""
        with self.lock:
            values = self.data["times"].setdefault(key, {}).setdefault(route, [])
            values.append(round(seconds, 5))
            del values[:-KEEP_TIMES]
            marks = self.data.setdefault("cold", {}).setdefault(key, [])
            if cold and route not in marks:
                marks.append(route)

    def cold(self, key: str, route: str) -> bool:
        """Whether one of ``route``'s timings at ``key`` was its first call in a process."""
        with self.lock:
            return route in self.data.get("cold", {}).get(key, [])

    def error(self, key: str, route: str) -> float | None:
        with self.lock:
            value = self.data["errors"].get(key, {}).get(route)
        return None if value is None else float(value)

    def set_error(self, key: str, route: str, value: float) -> None:
        with self.lock:
            self.data["errors"].setdefault(key, {})[route] = round(value, 6)

    def save(self) -> None:
        if self.path is None:
            return
        with self.lock:
            text = json.dumps(self.data, indent=1, sort_keys=True)
        try:
            atomic_write_text(self.path, text + "\n")
        except OSError:
            log.warning("could not write calibration file %s", self.path, exc_info=True)


def relative_error(output: torch.Tensor, reference: torch.Tensor) -> float:
    ref = reference.detach().float()
    diff = output.detach().float().to(ref.device) - ref
    return float(diff.norm() / ref.norm().clamp_min(1e-12))


@dataclass
class Decision:
    """What one call does: the routes it runs on the same inputs, and whose output it returns."""

    run: list[str]
    returned: str
    calibrating: bool


class RoutePolicy:
    """The pure part of the choice: from the ready routes and what was measured, what to run on this call."""

    def __init__(self, store: CalibrationStore, model_key: str) -> None:
        self.store = store
        self.model_key = model_key

    def accuracy_key(self, component: str) -> str:
        return f"{self.model_key}|{component}"

    def time_key(self, component: str, shape_key: str) -> str:
        return f"{self.model_key}|{component}|{shape_key}"

    def qualified(self, component: str, route: str) -> bool | None:
        """True/False once checked against PyTorch fp32; None while unchecked."""
        if route == REFERENCE:
            return True
        error = self.store.error(self.accuracy_key(component), route)
        return None if error is None else error <= ROUTE_TOLERANCE

    def route_time(self, component: str, shape_key: str, route: str) -> float | None:
        values = self.store.times(self.time_key(component, shape_key), route)
        return min(values) if values else None

    def best(self, component: str, shape_key: str, ready: Sequence[str]) -> str | None:
        timed = {name: self.route_time(component, shape_key, name) for name in ready
                 if self.qualified(component, name)}
        known = {name: value for name, value in timed.items() if value is not None}
        return min(known, key=lambda name: known[name]) if known else None

    def decide(self, component: str, shape_key: str, ready: Sequence[str]) -> Decision:
        unchecked = [name for name in ready if self.qualified(component, name) is None]
        usable = [name for name in ready if self.qualified(component, name)]
        key = self.time_key(component, shape_key)
        untimed = [name for name in usable if not self.store.times(key, name)]
        best = self.best(component, shape_key, ready)
        if best is not None:
            best_time = self.route_time(component, shape_key, best) or 0.0
            for name in usable:  # a close second timed once, on a cold first call, gets one more try
                values = self.store.times(key, name)
                if (name != best and len(values) == 1 and values[0] <= RETIME_FACTOR * best_time
                        and self.store.cold(key, name)):
                    untimed.append(name)
        if unchecked:  # not checked on a crop (see AdaptiveComponent.check_on_crop): beside the reference here
            run = [REFERENCE, *[name for name in unchecked + untimed if name != REFERENCE]]
            return Decision(list(dict.fromkeys(run)), REFERENCE, True)
        if untimed:  # one route a call: the call the job needs anyway is the measurement
            # the likely fastest first: an exported graph, then a converted copy, then the fp32 reference (a VAE
            # decodes once per job, so the first job's decode runs on the first of these)
            untimed.sort(key=lambda name: (name.startswith("torch:"), name == REFERENCE))
            return Decision([untimed[0]], untimed[0], True)
        assert best is not None, "a ready route is always usable: torch:fp32 is"
        return Decision([best], best, False)


class AdaptiveComponent(ComponentWrapper):
    """Base of the UNet / VAE stand-ins: holds the routes, the policy and what ran."""

    component: str = ""

    def __init__(self, original: torch.nn.Module, policy: RoutePolicy, routes: list[Route],
                 undo: Callable[[], None] | None = None) -> None:
        super().__init__(original, undo)
        object.__setattr__(self, "backend_name", "auto")
        object.__setattr__(self, "policy", policy)
        object.__setattr__(self, "_routes", {route.name: route for route in routes})
        object.__setattr__(self, "_lock", threading.Lock())
        object.__setattr__(self, "used", Counter())  # route name -> calls since begin_job
        object.__setattr__(self, "calibrating", False)
        object.__setattr__(self, "last_route", REFERENCE)
        # (route, shape) pairs an exported graph has run once in this process: its first call at a shape includes
        # the runtime's shape-specific preparation (OpenVINO's dynamic-shape compile: 20x a 64² step), so it is
        # not counted as a measurement
        object.__setattr__(self, "warmed", set())
        object.__setattr__(self, "called", set())  # routes called in this process (their weights are paged in)

    def add_route(self, route: Route) -> None:
        with object.__getattribute__(self, "_lock"):
            object.__getattribute__(self, "_routes")[route.name] = route
        self.release_bridges()

    def release_bridges(self) -> None:
        """Once an exported graph is ready and within the tolerance for this model, the converted PyTorch copies
        (the bf16 bridge used until the export joined) are dropped: on SD 1.5 they hold 1.9 GB that the export,
        2.5x faster than the copy at 512², makes idle. The fp32 original stays (ControlNet/LoRA calls, the
        reference of later checks)."""
        routes = self.routes
        policy: RoutePolicy = self.policy
        if not any(route.graph and policy.qualified(self.component, name) for name, route in routes.items()):
            return
        for name, route in routes.items():
            if not route.graph and name != REFERENCE:
                self.remove_route(name)
                log.info("auto: %s %s released: an exported route is ready and checked", self.component, name)

    def remove_route(self, name: str) -> None:
        with object.__getattribute__(self, "_lock"):
            object.__getattribute__(self, "_routes").pop(name, None)

    @property
    def routes(self) -> dict[str, Route]:
        with object.__getattribute__(self, "_lock"):
            return dict(object.__getattribute__(self, "_routes"))

    def begin_job(self) -> None:
        self.used.clear()

    def main_route(self) -> Route:
        """The route that ran most calls since :meth:`begin_job` (the one the infotext names)."""
        routes = self.routes
        if self.used:
            name = self.used.most_common(1)[0][0]
            if name in routes:
                return routes[name]
        return routes[self.last_route] if self.last_route in routes else routes[REFERENCE]

    def dispatch(self, shape_key: str, args: tuple[Any, ...], kwargs: dict[str, Any], tensor_of: Callable[[Any], Any],
                 forced: str | None = None) -> Any:
        """Run the call on the route(s) the policy picks, time them, and return the chosen output."""
        routes = self.routes
        policy: RoutePolicy = self.policy
        if forced is not None:
            decision = Decision([forced], forced, False)
        else:
            unchecked = [name for name in routes if policy.qualified(self.component, name) is None]
            if unchecked:
                self.check_on_crop(unchecked, routes, args, kwargs, tensor_of)
                routes = self.routes  # a checked export may have released the converted copies
            decision = policy.decide(self.component, shape_key, list(routes))
        object.__setattr__(self, "calibrating", decision.calibrating)
        outputs: dict[str, Any] = {}
        for name in decision.run:
            started = time.perf_counter()
            outputs[name] = routes[name].run(*args, **kwargs)
            elapsed = time.perf_counter() - started
            warm_up = routes[name].graph and (name, shape_key) not in self.warmed
            self.warmed.add((name, shape_key))
            cold = name not in self.called
            self.called.add(name)
            if forced is None and not warm_up:
                policy.store.add_time(policy.time_key(self.component, shape_key), name, elapsed, cold=cold)
        if decision.calibrating:
            accuracy_key = policy.accuracy_key(self.component)
            reference = outputs.get(REFERENCE)
            for name, output in outputs.items():
                if name != REFERENCE and reference is not None and policy.qualified(self.component, name) is None:
                    error = relative_error(tensor_of(output), tensor_of(reference))
                    policy.store.set_error(accuracy_key, name, error)
                    log.info("auto: %s %s relative error %.4f against PyTorch fp32 (%s)", self.component, name,
                             error, "kept" if error <= ROUTE_TOLERANCE else "dropped")
            policy.store.save()
            log.info("auto: %s at %s calibrated %s", self.component, shape_key,
                     {name: policy.store.times(policy.time_key(self.component, shape_key), name)
                      for name in decision.run})
        object.__setattr__(self, "calibrating", False)
        object.__setattr__(self, "last_route", decision.returned)
        self.used[decision.returned] += 1
        if decision.calibrating:
            self.release_bridges()
        return outputs[decision.returned]

    def crop(self, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """``args`` with the latents cut to their top-left ``CHECK_CROP`` square; None where they are no larger."""
        latents = args[0]
        if not isinstance(latents, torch.Tensor) or latents.dim() != 4:
            return None
        if latents.shape[-1] <= CHECK_CROP and latents.shape[-2] <= CHECK_CROP:
            return None
        return (latents[..., :CHECK_CROP, :CHECK_CROP].contiguous(), *args[1:])

    def check_on_crop(self, unchecked: list[str], routes: dict[str, Route], args: tuple[Any, ...],
                      kwargs: dict[str, Any], tensor_of: Callable[[Any], Any]) -> None:
        """Measure each unchecked route's error against the reference on a crop of this call's inputs. A route
        that cannot run the crop stays unchecked: the policy then checks it beside the reference on the call."""
        cropped = self.crop(args)
        if cropped is None:
            return
        policy: RoutePolicy = self.policy
        reference = tensor_of(routes[REFERENCE].run(*cropped, **kwargs))
        self.called.add(REFERENCE)
        for name in unchecked:
            try:
                output = tensor_of(routes[name].run(*cropped, **kwargs))
                self.called.add(name)
            except Exception as exc:  # e.g. an export with static shapes
                log.info("auto: %s %s cannot run a %d² crop (%s); checking it on a full call", self.component,
                         name, CHECK_CROP, exc)
                continue
            error = relative_error(output, reference)
            policy.store.set_error(policy.accuracy_key(self.component), name, error)
            log.info("auto: %s %s relative error %.4f against PyTorch fp32 on a %d² crop (%s)", self.component, name,
                     error, CHECK_CROP, "kept" if error <= ROUTE_TOLERANCE else "dropped")
        policy.store.save()
        self.release_bridges()


class AdaptiveUNet(AdaptiveComponent):
    """``pipe.unet`` under ``backend: auto`` on a CPU."""

    component = "unet"

    def forward(self, sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor,
                timestep_cond: Any = None, cross_attention_kwargs: Any = None,
                added_cond_kwargs: dict[str, torch.Tensor] | None = None, return_dict: bool = True,
                **extra: Any) -> Any:
        kwargs = {"timestep_cond": timestep_cond, "cross_attention_kwargs": cross_attention_kwargs,
                  "added_cond_kwargs": added_cond_kwargs, "return_dict": return_dict, **extra}
        forced = REFERENCE if unsupported_unet_inputs(self.original, timestep_cond, cross_attention_kwargs,
                                                      extra) else None
        shape_key = "x".join(str(size) for size in (*sample.shape, encoder_hidden_states.shape[1]))
        return self.dispatch(shape_key, (sample, timestep, encoder_hidden_states), kwargs, _sample_of, forced)


class AdaptiveVae(AdaptiveComponent):
    """``pipe.vae`` under ``backend: auto``: ``decode`` is routed; ``encode`` (img2img) stays the original."""

    component = "vae"

    def decode(self, latents: torch.Tensor, return_dict: bool = True, generator: Any = None) -> Any:
        shape_key = "x".join(str(size) for size in latents.shape)
        return self.dispatch(shape_key, (latents,), {"return_dict": return_dict}, _sample_of)


def _sample_of(output: Any) -> torch.Tensor:
    if isinstance(output, tuple):
        return output[0]
    return output.sample


# ------------------------------------------------------------------------------------------------ route builders


def torch_unet_route(unet: torch.nn.Module, dtype: torch.dtype) -> Route:
    """The loaded UNet itself (fp32), or a copy in ``dtype`` with inputs cast in and the output cast back."""
    if dtype == unet.dtype:
        return Route(f"torch:{_precision_name(dtype)}", unet)
    import copy

    runner = copy.deepcopy(unet).to(dtype)

    def run(sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor, **kwargs: Any) -> Any:
        added = kwargs.get("added_cond_kwargs")
        if added:
            kwargs["added_cond_kwargs"] = {key: value.to(dtype) if isinstance(value, torch.Tensor) else value
                                           for key, value in added.items()}
        out_dtype = sample.dtype
        result = runner(sample.to(dtype), timestep, encoder_hidden_states.to(dtype), **kwargs)
        if isinstance(result, tuple):
            return (result[0].to(out_dtype), *result[1:])
        result.sample = result.sample.to(out_dtype)
        return result

    return Route(f"torch:{_precision_name(dtype)}", run)


def torch_vae_route(vae: Any, dtype: torch.dtype) -> Route:
    if dtype == vae.dtype:
        return Route(f"torch:{_precision_name(dtype)}", vae.decode)
    import copy

    runner = copy.deepcopy(vae).to(dtype)

    def run(latents: torch.Tensor, return_dict: bool = True) -> Any:
        result = runner.decode(latents.to(dtype), return_dict=return_dict)
        if isinstance(result, tuple):
            return (result[0].to(latents.dtype), *result[1:])
        result.sample = result.sample.to(latents.dtype)
        return result

    return Route(f"torch:{_precision_name(dtype)}", run)


def graph_unet_route(name: str, unet: Any, graph: Callable[[dict[str, torch.Tensor]], torch.Tensor]) -> Route:
    def run(sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor, *,
            added_cond_kwargs: dict[str, torch.Tensor] | None = None, return_dict: bool = True,
            **_: Any) -> Any:
        inputs = unet_call_inputs(unet, sample, timestep, encoder_hidden_states, added_cond_kwargs)
        out = graph(inputs)
        return unet_output(out.to(device=sample.device, dtype=sample.dtype), return_dict)

    return Route(name, run, graph=True)


def graph_vae_route(name: str, graph: Callable[[dict[str, torch.Tensor]], torch.Tensor]) -> Route:
    def run(latents: torch.Tensor, return_dict: bool = True) -> Any:
        decoded = graph({"latents": latents}).to(device=latents.device, dtype=latents.dtype)
        if return_dict:
            from diffusers.models.autoencoders.vae import DecoderOutput

            return DecoderOutput(sample=decoded)
        return (decoded,)

    return Route(name, run, graph=True)


def _precision_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))


# ------------------------------------------------------------------------------------------------ background export


@dataclass
class BackgroundExport:
    """Exports (or loads from the cache) the UNet and VAE decoder for one runtime in a daemon thread, then adds
    the routes. ``state`` is ``running``, ``ready``, ``failed`` or ``cancelled``; ``error`` says why it failed."""

    route_name: str
    build: Callable[[], tuple[Route | None, Route | None]]  # (unet route, vae route), run in the thread
    on_ready: Callable[[Route | None, Route | None], None]
    state: str = "pending"
    error: str | None = None
    started: float = 0.0
    finished: float = 0.0
    thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> None:
        self.state = "running"
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._work, name=f"easel-export-{self.route_name}", daemon=True)
        self.thread.start()

    def cancel(self) -> None:
        if self.state == "running":
            self.state = "cancelled"

    def wait(self, timeout: float | None = None) -> bool:
        if self.thread is not None:
            self.thread.join(timeout)
        return self.state == "ready"

    def _work(self) -> None:
        try:
            unet_route, vae_route = self.build()
        except Exception as exc:  # the jobs keep running on the ready routes
            self.state, self.error = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("auto: background export %s failed; staying on the ready paths", self.route_name)
            return
        finally:
            self.finished = time.monotonic()
        if self.state == "cancelled":
            return
        self.on_ready(unet_route, vae_route)
        self.state = "ready"
        log.info("auto: %s ready after %.1fs in the background", self.route_name, self.finished - self.started)

    def describe(self) -> str:
        backend, _, precision = self.route_name.partition(":")
        title = {"openvino": "OpenVINO", "onnxruntime": "ONNX Runtime"}.get(backend, backend)
        if self.state == "running":
            return f"{title} {precision} export running in the background ({time.monotonic() - self.started:.0f} s)"
        if self.state == "failed":
            return f"{title} {precision} export failed: {self.error}"
        return ""


# ------------------------------------------------------------------------------------------------ assembly


@dataclass
class AdaptiveExecution:
    """What ``backend: auto`` installed on one CPU pipeline: the routed UNet and VAE and the background export."""

    unet: AdaptiveUNet
    vae: AdaptiveVae | None
    export: BackgroundExport | None

    def status(self) -> str:
        """The progress text: the UNet's current route and, while it runs, the background export."""
        route = self.unet.routes.get(self.unet.last_route) or self.unet.routes[REFERENCE]
        parts = [f"calibrating ({', '.join(self.unet.routes)})" if self.unet.calibrating else f"UNet on {route.label}"]
        if self.export is not None and self.export.state in ("running", "failed"):
            parts.append(self.export.describe())
        return "; ".join(parts)

    def cancel(self) -> None:
        if self.export is not None:
            self.export.cancel()


def install_adaptive(loaded: Any, *, store: CalibrationStore, model_key: str, bf16: bool,
                     export: tuple[str, str] | None, build_export: Callable[[Any, Any], tuple[Any, Any | None]] | None,
                     start_export: bool = True) -> AdaptiveExecution:
    """Wrap ``loaded.pipe``'s UNet and VAE: torch fp32 (and a bf16 copy when ``bf16``) ready now; ``export`` =
    (backend, precision) built by ``build_export(unet, vae)`` -> (unet graph, vae graph) in a background thread."""
    from modules.backends.base import install_component

    pipe = loaded.pipe
    unet, vae = pipe.unet, getattr(pipe, "vae", None)
    policy = RoutePolicy(store, model_key)
    unet_routes = [torch_unet_route(unet, unet.dtype)]
    vae_routes = [torch_vae_route(vae, vae.dtype)] if vae is not None else []
    if unet_routes[0].name != REFERENCE:
        raise ValueError(f"backend auto calibrates against a float32 UNet; this one is {unet.dtype}")
    if bf16:
        unet_routes.append(torch_unet_route(unet, torch.bfloat16))
        if vae is not None and vae.dtype == torch.float32:
            vae_routes.append(torch_vae_route(vae, torch.bfloat16))
    background: BackgroundExport | None = None
    adaptive_vae: AdaptiveVae | None = None

    def cancel_export() -> None:  # restore (model unload, options change) discards an unfinished export
        if background is not None:
            background.cancel()

    adaptive_unet = AdaptiveUNet(unet, policy, unet_routes, undo=cancel_export)
    if vae is not None and vae.dtype == torch.float32:
        adaptive_vae = AdaptiveVae(vae, policy, vae_routes)
    if export is not None and build_export is not None:
        name = f"{export[0]}:{export[1]}"

        def build() -> tuple[Route | None, Route | None]:
            graph, vae_graph = build_export(unet, vae)
            return (graph_unet_route(name, unet, graph),
                    graph_vae_route(name, vae_graph) if vae_graph is not None else None)

        def ready(unet_route: Route | None, vae_route: Route | None) -> None:
            if unet_route is not None:
                adaptive_unet.add_route(unet_route)
            if vae_route is not None and adaptive_vae is not None:
                adaptive_vae.add_route(vae_route)

        background = BackgroundExport(name, build, ready)
    install_component(pipe, "unet", adaptive_unet)
    if adaptive_vae is not None:
        install_component(pipe, "vae", adaptive_vae)
    if background is not None and start_export:
        background.start()
    return AdaptiveExecution(adaptive_unet, adaptive_vae, background)
