"""Seeds and initial noise the way A1111 users expect them.

* ``-1`` means a random seed; image ``i`` of a job uses ``seed + i`` (and ``subseed + i``).
* Each image's noise comes from its own CPU generator, so results do not depend on the device or on the batch
  size ("RNG: CPU"). The same generator then drives the sampler's per-step noise (ancestral/SDE samplers), which
  is exactly what diffusers does with a list of generators - the basis of pixel parity with ``pipe()``.
* Variation seeds: the noise is the spherical interpolation between the seed's and the subseed's noise.
* ``seed_resize_from_w/h``: the noise is drawn at that size and pasted centred, so a composition found at one
  size survives a size change.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

MAX_SEED = 2**32 - 1


def resolve_seed(seed: int | None) -> int:
    """A1111 semantics: ``None`` or ``-1`` draws a random seed, anything else is kept."""
    if seed is None or seed == -1:
        return random.randrange(MAX_SEED)
    return int(seed)


@dataclass(frozen=True)
class SeedPlan:
    """The seeds of every image of a job, in order."""

    seeds: list[int]
    subseeds: list[int]
    subseed_strength: float
    seed_resize_from: tuple[int, int] | None  # (width, height) or None

    @classmethod
    def create(cls, seed: int, subseed: int, subseed_strength: float, count: int,
               seed_resize_from_w: int = -1, seed_resize_from_h: int = -1) -> SeedPlan:
        base = resolve_seed(seed)
        sub = resolve_seed(subseed) if subseed_strength > 0 else (subseed if subseed != -1 else -1)
        sub_base = sub if sub != -1 else 0
        resize = None
        if seed_resize_from_w > 0 and seed_resize_from_h > 0:
            resize = (seed_resize_from_w, seed_resize_from_h)
        return cls(
            seeds=[base + i for i in range(count)],
            subseeds=[sub_base + i for i in range(count)] if sub != -1 else [-1] * count,
            subseed_strength=subseed_strength,
            seed_resize_from=resize,
        )


def slerp(value: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between two noise tensors (per sample), falling back to lerp when parallel."""
    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.mean() > 0.9995:
        return low * (1 - value) + high * value
    omega = torch.acos(dot)
    so = torch.sin(omega)
    return (torch.sin((1.0 - value) * omega) / so).unsqueeze(1) * low + (torch.sin(value * omega) / so).unsqueeze(
        1) * high


def create_generators(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator(device="cpu").manual_seed(int(seed)) for seed in seeds]


def create_noise(plan: SeedPlan, indices: range, shape: tuple[int, int, int],
                 generators: list[torch.Generator], *, latent_scale: int = 8) -> torch.Tensor:
    """Initial latent noise for the images ``indices`` of the plan, drawn from ``generators`` (advancing them).

    ``shape`` is (channels, latent_height, latent_width). Returns a float32 CPU tensor (batch, *shape).
    """
    channels, height, width = shape
    noises = []
    for position, index in enumerate(indices):
        generator = generators[position]
        if plan.seed_resize_from is not None:
            from_w, from_h = plan.seed_resize_from
            noise_shape = (channels, max(1, from_h // latent_scale), max(1, from_w // latent_scale))
        else:
            noise_shape = shape
        sub_noise = None
        if plan.subseed_strength > 0 and plan.subseeds[index] != -1:
            sub_generator = torch.Generator(device="cpu").manual_seed(int(plan.subseeds[index]))
            sub_noise = torch.randn((1, *noise_shape), generator=sub_generator, dtype=torch.float32)
        noise = torch.randn((1, *noise_shape), generator=generator, dtype=torch.float32)
        if sub_noise is not None:
            noise = slerp(plan.subseed_strength, noise, sub_noise)
        if noise_shape != shape:
            noise = _paste_centred(noise, shape, generator)
        noises.append(noise)
    return torch.cat(noises, dim=0)


def _paste_centred(noise: torch.Tensor, shape: tuple[int, int, int], generator: torch.Generator) -> torch.Tensor:
    """Place noise drawn at another size in the middle of fresh noise of the target size (A1111's seed resize)."""
    channels, height, width = shape
    target = torch.randn((1, channels, height, width), generator=generator, dtype=torch.float32)
    _, _, src_h, src_w = noise.shape
    copy_h, copy_w = min(height, src_h), min(width, src_w)
    dst_y, dst_x = (height - copy_h) // 2, (width - copy_w) // 2
    src_y, src_x = (src_h - copy_h) // 2, (src_w - copy_w) // 2
    target[:, :, dst_y:dst_y + copy_h, dst_x:dst_x + copy_w] = noise[:, :, src_y:src_y + copy_h, src_x:src_x + copy_w]
    return target
