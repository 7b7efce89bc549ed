"""Prompt features applied to every run: styles, wildcards, extra networks (LoRA) and embeddings.

:class:`PromptFeatures` is a processor *prompt preprocessor* (run after the model is chosen, before seeds)
plus a *finalizer* (run when the job ends, success or not). Order, as A1111 and the prompt parser document:

1. styles (``styles.csv``) applied to every prompt -> ``run.all_prompts``/``all_negative_prompts``,
2. seeds planned (A1111's rule) so that
3. wildcards ``__name__`` expand reproducibly: image *i* draws with ``random.Random(all_seeds[i])``,
4. ``<lora:name:te[:unet]>`` tags are collected; the LoRA files are loaded into the pipeline and weighted,
   the tags stay in ``all_prompts`` (so the infotext reproduces the image) and are removed from the texts the
   encoder sees by :class:`StripExtraNetworks`, a ``process_batch`` hook,
5. textual-inversion names found in the prompts are handed to the encoder (``extra_network_data["embeddings"]``),
6. ``Lora hashes``/``TI hashes`` go to ``extra_generation_params`` (the infotext).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modules.extensions.networks import LoraActivation, LoraFile, NetworksService
from modules.processing.prompt_parser import ExtraNetworkRef, extract_extra_networks
from modules.processing.run import ProcessingHooks
from modules.processing.styles import StyleStore
from modules.processing.wildcards import expand_wildcards

log = logging.getLogger(__name__)

LORA_KINDS = ("lora", "lyco")


class StylesService:
    """``services.styles``: the styles of ``styles.csv``, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.store = StyleStore(path)
        self._stamp: tuple[int, float] | None = None
        self.reload_if_changed()

    def reload_if_changed(self) -> StyleStore:
        path = self.store.path
        stamp = (path.stat().st_size, path.stat().st_mtime) if path.is_file() else None
        if stamp != self._stamp:
            self.store.reload()
            self._stamp = stamp
        return self.store

    def styles(self) -> list[dict[str, str]]:
        """``/sdapi/v1/prompt-styles`` entries."""
        return [{"name": s.name, "prompt": s.prompt, "negative_prompt": s.negative_prompt}
                for s in self.reload_if_changed()]

    def apply(self, prompt: str, negative_prompt: str, names: Sequence[str]) -> tuple[str, str]:
        return self.reload_if_changed().apply_styles(prompt, negative_prompt, names)


class StripExtraNetworks(ProcessingHooks):
    """``process_batch`` hook: the encoder sees the batch's prompts without ``<kind:...>`` tags."""

    def process_batch(self, run: Any, batch_number: int, prompts: list[str], seeds: list[int],
                      subseeds: list[int]) -> None:
        prompts[:] = [extract_extra_networks(prompt)[0] for prompt in prompts]


@dataclass
class PromptFeatures:
    styles: StylesService | None
    networks: NetworksService | None
    wildcard_dirs: list[Path] = field(default_factory=list)

    def preprocess(self, run: Any) -> None:
        self._styles_and_prompts(run)
        self._seeds(run)
        self._wildcards(run)
        if not any(isinstance(hook, StripExtraNetworks) for hook in run.hooks):
            run.hooks.insert(0, StripExtraNetworks())
        run.all_negative_prompts = [extract_extra_networks(text)[0] for text in run.all_negative_prompts]
        # copies of a run (XYZ, loopback) share these dicts; never write into another run's
        run.extra_generation_params = {key: value for key, value in run.extra_generation_params.items()
                                       if key not in ("Lora hashes", "TI hashes")}
        run.extra_network_data = dict(run.extra_network_data)
        refs = [ref for text in run.all_prompts for ref in extract_extra_networks(text)[1]]
        if refs and not run.disable_extra_networks:
            self._activate_loras(run, refs)
        self._embeddings(run)

    def finalize(self, run: Any) -> None:
        activation = run.extra_network_data.pop("lora_activation", None)
        if activation is not None:
            activation.remove()

    # -- steps -------------------------------------------------------------------------------------------------
    def _styles_and_prompts(self, run: Any) -> None:
        count = run.batch_size * run.n_iter
        if run.all_prompts:
            return
        prompts = run.prompt if isinstance(run.prompt, list) else [run.prompt] * count
        negatives = run.negative_prompt if isinstance(run.negative_prompt, list) else [run.negative_prompt] * count
        prompts = list(prompts)[:count] or [""] * count
        negatives = (list(negatives) + [""] * count)[:len(prompts)]
        if run.styles and self.styles is not None:
            pairs = [self.styles.apply(p, n, run.styles) for p, n in zip(prompts, negatives, strict=True)]
            prompts, negatives = [p for p, _ in pairs], [n for _, n in pairs]
        run.all_prompts = prompts
        if not run.all_negative_prompts:
            run.all_negative_prompts = negatives

    def _seeds(self, run: Any) -> None:
        if run.all_seeds:
            return
        from modules.processing.seeds import SeedPlan

        plan = SeedPlan.create(run.seed, run.subseed, run.subseed_strength, len(run.all_prompts),
                               run.seed_resize_from_w, run.seed_resize_from_h)
        run.all_seeds, run.all_subseeds = plan.seeds, plan.subseeds
        run.seed, run.subseed = plan.seeds[0], plan.subseeds[0]

    def _wildcards(self, run: Any) -> None:
        folders = [folder for folder in self.wildcard_dirs if folder.is_dir()]
        if not folders or not any("__" in text for text in [*run.all_prompts, *run.all_negative_prompts]):
            return

        def expand(text: str, seed: int) -> str:
            rng = random.Random(seed)
            for folder in folders:
                text = expand_wildcards(text, folder, rng)
            return text

        seeds = run.all_seeds
        run.all_prompts = [expand(text, seeds[i % len(seeds)]) for i, text in enumerate(run.all_prompts)]
        run.all_negative_prompts = [expand(text, seeds[i % len(seeds)] + 1)
                                    for i, text in enumerate(run.all_negative_prompts)]

    def _activate_loras(self, run: Any, refs: list[ExtraNetworkRef]) -> None:
        chosen: dict[str, tuple[LoraFile, float, float]] = {}
        for ref in refs:
            if ref.kind not in LORA_KINDS:
                from modules.extra_networks import extra_network_aliases, extra_network_registry

                if ref.kind not in extra_network_registry and ref.kind not in extra_network_aliases:
                    _warn(run, f"extra network kind {ref.kind!r} is not supported; {ref.tag} ignored")
                continue
            if ref.name in chosen:
                continue
            lora = self.networks.find_lora(ref.name) if self.networks is not None else None
            if lora is None:
                _warn(run, f"LoRA {ref.name!r} not found in {self.networks.lora_dir if self.networks else 'models'}")
                continue
            chosen[ref.name] = (lora, ref.te_multiplier, ref.unet_multiplier)
        if not chosen or self.networks is None:
            return
        activation = LoraActivation(run.sd_model.pipe)
        run.extra_network_data["lora_activation"] = activation
        activation.apply(list(chosen.values()))
        run.extra_generation_params["Lora hashes"] = ", ".join(
            f"{name}: {self.networks.lora_hash(lora)}" for name, (lora, _, _) in chosen.items())

    def _embeddings(self, run: Any) -> None:
        if self.networks is None:
            return
        used = self.networks.embeddings_in([*run.all_prompts, *run.all_negative_prompts])
        if not used:
            return
        existing = dict(run.extra_network_data.get("embeddings") or {})
        existing.update({name: emb.vectors for name, emb in used.items()})
        run.extra_network_data["embeddings"] = existing
        run.extra_generation_params["TI hashes"] = ", ".join(
            f"{name}: {self.networks.embedding_hash(emb)}" for name, emb in used.items())


def _warn(run: Any, message: str) -> None:
    log.warning(message)
    if message not in run.warnings:
        run.warnings.append(message)
