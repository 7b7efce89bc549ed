"""A1111's ``modules.extra_networks`` for drop-in extensions: ``<kind:name:args>`` prompt tags handled by
extension-registered networks.

An extension subclasses :class:`ExtraNetwork` and calls :func:`register_extra_network`; for every batch of a
generation, Easel strips the tags of registered kinds from the prompts and calls ``activate(p, params_list)``
with A1111's :class:`ExtraNetworkParams`, then the always-on scripts' ``after_extra_networks_activate``; at the
end of the run ``deactivate(p)``. LoRA tags are Easel's own (diffusers' LoRA loading) and reach no extension.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from typing import Any

log = logging.getLogger(__name__)

re_extra_net = re.compile(r"<(\w+):([^>]+)>")

extra_network_registry: dict[str, ExtraNetwork] = {}
extra_network_aliases: dict[str, ExtraNetwork] = {}


class ExtraNetworkParams:
    """One tag's arguments: ``items`` are the ``:``-separated values (name first), ``named`` the ``key=value``
    ones (A1111's class)."""

    def __init__(self, items: list[str] | None = None) -> None:
        self.items = items or []
        self.positional: list[str] = []
        self.named: dict[str, str] = {}
        for item in self.items:
            parts = item.split("=", 2) if isinstance(item, str) else [item]
            if len(parts) == 2:
                self.named[parts[0]] = parts[1]
            else:
                self.positional.append(item)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExtraNetworkParams) and self.items == other.items

    __hash__ = None  # type: ignore[assignment]


class ExtraNetwork:
    def __init__(self, name: str) -> None:
        self.name = name

    def activate(self, p: Any, params_list: list[ExtraNetworkParams]) -> None:
        raise NotImplementedError

    def deactivate(self, p: Any) -> None:
        raise NotImplementedError


def initialize() -> None:
    extra_network_registry.clear()
    extra_network_aliases.clear()


def register_extra_network(extra_network: ExtraNetwork) -> None:
    extra_network_registry[extra_network.name] = extra_network


def register_extra_network_alias(extra_network: ExtraNetwork, alias: str) -> None:
    extra_network_aliases[alias] = extra_network


def register_default_extra_networks() -> None:
    """A1111 registers its hypernetwork handler here; Easel's LoRA support is built in."""


def lookup_extra_networks(extra_network_data: dict[str, list[ExtraNetworkParams]]) -> dict[ExtraNetwork, list[Any]]:
    found: dict[ExtraNetwork, list[Any]] = {}
    for name, params in extra_network_data.items():
        network = extra_network_registry.get(name) or extra_network_aliases.get(name)
        if network is not None:
            found.setdefault(network, []).extend(params)
    return found


def parse_prompt(prompt: str) -> tuple[str, dict[str, list[ExtraNetworkParams]]]:
    """Remove every ``<kind:args>`` tag; return the text and ``{kind: [params...]}`` (A1111's function)."""
    res: dict[str, list[ExtraNetworkParams]] = defaultdict(list)

    def found(match: re.Match[str]) -> str:
        res[match.group(1)].append(ExtraNetworkParams(items=match.group(2).split(":")))
        return ""

    return re.sub(re_extra_net, found, prompt), res


def parse_prompts(prompts: list[str]) -> tuple[list[str], dict[str, list[ExtraNetworkParams]]]:
    res: list[str] = []
    extra_data: dict[str, list[ExtraNetworkParams]] = {}
    for prompt in prompts:
        updated, parsed = parse_prompt(prompt)
        if not extra_data:
            extra_data = parsed
        res.append(updated)
    return res, extra_data


def activate(p: Any, extra_network_data: dict[str, list[ExtraNetworkParams]]) -> None:
    """Call each registered network's ``activate`` (also with an empty list, as A1111 does), each isolated."""
    for network, params in [*lookup_extra_networks(extra_network_data).items(),
                            *((net, []) for name, net in extra_network_registry.items()
                              if name not in extra_network_data)]:
        try:
            network.activate(p, params)
        except Exception:
            log.exception("activating extra network %s failed", network.name)


def deactivate(p: Any, extra_network_data: dict[str, list[ExtraNetworkParams]] | None = None) -> None:
    for network in list(extra_network_registry.values()):
        try:
            network.deactivate(p)
        except Exception:
            log.exception("deactivating extra network %s failed", network.name)
