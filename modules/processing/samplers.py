"""A1111 sampler and schedule-type names mapped onto diffusers schedulers, by registry.

A sampler is a diffusers scheduler class plus config overrides; a schedule type is a further set of config
overrides (Karras sigmas, trailing spacing, ...). A scheduler is always built with
``Cls.from_config(model_scheduler.config, **overrides)``, so the model's prediction type, beta schedule,
zero-terminal-SNR rescaling and timestep spacing survive the swap (SD 2.x v-prediction checkpoints and the
embedded zero-SNR model depend on that). Where a scheduler class has no ``rescale_betas_zero_snr`` switch, the
rescaled betas are passed explicitly as ``trained_betas``.

A few A1111 samplers are k-diffusion algorithms that diffusers does not implement (DPM fast, DPM adaptive,
Restart, DDIM CFG++, DPM++ 2S a): they run on the nearest diffusers scheduler, and ``SamplerSpec.note`` says
which, so the API's ``/samplers`` options and the job's warnings are honest about it.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modules.core.errors import UserInputError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DEFAULT_SAMPLER = "Default"
"""The model's own scheduler, unchanged."""


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    scheduler_class: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    note: str | None = None

    @property
    def is_ancestral(self) -> bool:
        return self.name.endswith(" a") or "SDE" in self.name


@dataclass(frozen=True)
class ScheduleType:
    name: str
    label: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()


class SamplerRegistry:
    """Name -> spec maps for samplers and schedule types; a duplicate name or alias is an error."""

    def __init__(self) -> None:
        self._samplers: dict[str, SamplerSpec] = {}
        self._lookup: dict[str, str] = {}
        self._schedules: dict[str, ScheduleType] = {}
        self._schedule_lookup: dict[str, str] = {}

    def register(self, spec: SamplerSpec) -> None:
        for folded in dict.fromkeys(key.lower() for key in (spec.name, *spec.aliases)):
            key = folded
            if folded in self._lookup:
                raise ValueError(f"sampler name {key!r} is already registered")
            self._lookup[folded] = spec.name
        self._samplers[spec.name] = spec

    def register_schedule(self, schedule: ScheduleType) -> None:
        for key in (schedule.name, schedule.label, *schedule.aliases):
            folded = key.lower()
            if folded in self._schedule_lookup and self._schedule_lookup[folded] != schedule.name:
                raise ValueError(f"schedule type {key!r} is already registered")
            self._schedule_lookup[folded] = schedule.name
        self._schedules[schedule.name] = schedule

    @property
    def samplers(self) -> list[SamplerSpec]:
        return list(self._samplers.values())

    @property
    def schedules(self) -> list[ScheduleType]:
        return list(self._schedules.values())

    def get(self, name: str, *, field_name: str = "sampler_name") -> SamplerSpec:
        canonical = self._lookup.get(name.strip().lower())
        if canonical is None:
            allowed = ", ".join(spec.name for spec in self._samplers.values())
            raise UserInputError(field_name, f"unknown sampler {name!r}; allowed: {allowed}")
        return self._samplers[canonical]

    def get_schedule(self, name: str, *, field_name: str = "scheduler") -> ScheduleType:
        canonical = self._schedule_lookup.get(name.strip().lower())
        if canonical is None:
            allowed = ", ".join(schedule.label for schedule in self._schedules.values())
            raise UserInputError(field_name, f"unknown schedule type {name!r}; allowed: {allowed}")
        return self._schedules[canonical]

    def split_sampler_and_schedule(self, sampler_name: str | None, scheduler: str | None) -> tuple[str, str]:
        """A1111's ``get_sampler_and_scheduler``: "DPM++ 2M Karras" -> ("DPM++ 2M", "Karras")."""
        sampler = (sampler_name or DEFAULT_SAMPLER).strip()
        schedule = (scheduler or "Automatic").strip()
        if sampler.lower() in self._lookup:
            return self._samplers[self._lookup[sampler.lower()]].name, self.get_schedule(schedule).name
        for candidate in sorted(self._schedules.values(), key=lambda item: -len(item.label)):
            suffix = " " + candidate.label.lower()
            if sampler.lower().endswith(suffix):
                base = sampler[: -len(suffix)]
                if base.lower() in self._lookup:
                    schedule_name = candidate.name if schedule.lower() == "automatic" else schedule
                    return self._samplers[self._lookup[base.lower()]].name, self.get_schedule(schedule_name).name
        self.get(sampler)  # raises with the allowed list
        raise AssertionError("unreachable")

    def build(self, base_scheduler: Any, sampler_name: str, schedule_name: str = "Automatic") -> tuple[Any, list[str]]:
        """A new scheduler for ``sampler_name`` on the model's ``base_scheduler``; returns (scheduler, warnings)."""
        import diffusers

        spec = self.get(sampler_name)
        schedule = self.get_schedule(schedule_name)
        warnings: list[str] = []
        if spec.note:
            warnings.append(f"{spec.name}: {spec.note}")
        if spec.name == DEFAULT_SAMPLER and not schedule.overrides:
            return base_scheduler.__class__.from_config(base_scheduler.config), warnings
        cls_name = base_scheduler.__class__.__name__ if spec.name == DEFAULT_SAMPLER else spec.scheduler_class
        cls = getattr(diffusers, cls_name)
        accepted = set(inspect.signature(cls.__init__).parameters)
        overrides: dict[str, Any] = dict(spec.overrides)
        for key, value in schedule.overrides.items():
            if key in accepted:
                overrides[key] = value
            else:
                warnings.append(f"schedule type {schedule.label} is not available for {spec.name}; ignored")
        base_config = dict(base_scheduler.config)
        if base_config.get("rescale_betas_zero_snr") and "rescale_betas_zero_snr" not in accepted:
            overrides["trained_betas"] = zero_snr_betas(base_config).tolist()
        config = {key: value for key, value in base_config.items() if not key.startswith("_")}
        config.update(overrides)
        scheduler = cls.from_config(config)
        return scheduler, warnings


def zero_snr_betas(config: Mapping[str, Any]) -> torch.Tensor:
    """Betas of ``config`` rescaled to zero terminal SNR, with the last alpha-bar kept just above zero.

    Used for scheduler classes that lack the switch; the tiny floor mirrors what diffusers' Euler does so that
    sigma stays finite.
    """
    import torch

    steps = int(config.get("num_train_timesteps", 1000))
    start, end = float(config.get("beta_start", 0.00085)), float(config.get("beta_end", 0.012))
    if config.get("beta_schedule", "scaled_linear") == "scaled_linear":
        betas = torch.linspace(start**0.5, end**0.5, steps, dtype=torch.float64) ** 2
    else:
        betas = torch.linspace(start, end, steps, dtype=torch.float64)
    alphas_bar_sqrt = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = alphas_bar_sqrt[0].clone(), alphas_bar_sqrt[-1].clone()
    alphas_bar_sqrt = (alphas_bar_sqrt - last) * first / (first - last)
    alphas_bar = alphas_bar_sqrt**2
    alphas_bar[-1] = 2**-24
    alphas = torch.cat([alphas_bar[0:1], alphas_bar[1:] / alphas_bar[:-1]])
    return (1.0 - alphas).to(torch.float32)


def build_default_registry() -> SamplerRegistry:
    registry = SamplerRegistry()
    approx = "no diffusers implementation of this k-diffusion sampler; runs on {}"
    for spec in (
        SamplerSpec(DEFAULT_SAMPLER, "", aliases=("Automatic",)),
        SamplerSpec("DPM++ 2M", "DPMSolverMultistepScheduler",
                    {"algorithm_type": "dpmsolver++", "solver_order": 2}, ("k_dpmpp_2m",)),
        SamplerSpec("DPM++ SDE", "DPMSolverSDEScheduler", {}, ("k_dpmpp_sde",)),
        SamplerSpec("DPM++ 2M SDE", "DPMSolverMultistepScheduler",
                    {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}, ("k_dpmpp_2m_sde",)),
        SamplerSpec("DPM++ 2M SDE Heun", "DPMSolverMultistepScheduler",
                    {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "solver_type": "heun"},
                    ("k_dpmpp_2m_sde_heun",)),
        SamplerSpec("DPM++ 2S a", "DPMSolverSinglestepScheduler", {"solver_order": 2}, ("k_dpmpp_2s_a",),
                    note=approx.format("DPM-Solver++ 2S (singlestep, not ancestral)")),
        SamplerSpec("DPM++ 3M SDE", "DPMSolverMultistepScheduler",
                    {"algorithm_type": "sde-dpmsolver++", "solver_order": 3}, ("k_dpmpp_3m_sde",)),
        SamplerSpec("Euler a", "EulerAncestralDiscreteScheduler", {}, ("k_euler_a", "k_euler_ancestral")),
        SamplerSpec("Euler", "EulerDiscreteScheduler", {}, ("k_euler",)),
        SamplerSpec("LMS", "LMSDiscreteScheduler", {}, ("k_lms",)),
        SamplerSpec("Heun", "HeunDiscreteScheduler", {}, ("k_heun",)),
        SamplerSpec("DPM2", "KDPM2DiscreteScheduler", {}, ("k_dpm_2",)),
        SamplerSpec("DPM2 a", "KDPM2AncestralDiscreteScheduler", {}, ("k_dpm_2_a",)),
        SamplerSpec("DPM fast", "DPMSolverSinglestepScheduler", {"solver_order": 3}, ("k_dpm_fast",),
                    note=approx.format("DPM-Solver++ 3S")),
        SamplerSpec("DPM adaptive", "DPMSolverSinglestepScheduler", {"solver_order": 2}, ("k_dpm_ad",),
                    note=approx.format("DPM-Solver++ 2S with the requested step count")),
        SamplerSpec("Restart", "HeunDiscreteScheduler", {}, ("restart",),
                    note=approx.format("Heun (Restart's inner solver) without restarts")),
        SamplerSpec("DDIM", "DDIMScheduler", {"set_alpha_to_one": False}, ("ddim",)),
        SamplerSpec("DDIM CFG++", "DDIMScheduler", {"set_alpha_to_one": False}, ("ddim_cfgpp",),
                    note=approx.format("DDIM with standard CFG")),
        SamplerSpec("PLMS", "PNDMScheduler", {"skip_prk_steps": True}, ("plms",)),
        SamplerSpec("UniPC", "UniPCMultistepScheduler", {}, ("unipc",)),
        SamplerSpec("LCM", "LCMScheduler", {}, ("lcm",)),
        SamplerSpec("DEIS", "DEISMultistepScheduler", {}, ("deis",)),
        SamplerSpec("DDPM", "DDPMScheduler", {}, ("ddpm",)),
    ):
        registry.register(spec)
    for schedule in (
        ScheduleType("automatic", "Automatic"),
        ScheduleType("uniform", "Uniform", {"timestep_spacing": "linspace"}),
        ScheduleType("karras", "Karras", {"use_karras_sigmas": True}),
        ScheduleType("exponential", "Exponential", {"use_exponential_sigmas": True}),
        ScheduleType("sgm_uniform", "SGM Uniform", {"timestep_spacing": "trailing"}),
        ScheduleType("simple", "Simple", {"timestep_spacing": "trailing"}),
        ScheduleType("normal", "Normal", {"timestep_spacing": "linspace"}),
        ScheduleType("ddim", "DDIM", {"timestep_spacing": "leading"}),
        ScheduleType("beta", "Beta", {"use_beta_sigmas": True}),
    ):
        registry.register_schedule(schedule)
    return registry
