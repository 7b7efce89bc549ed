"""OpenVINO/NNCF int8 weight compression, applied to an OpenVINO IR before it is cached and compiled.

Why at the IR level: NNCF's weight compression is defined on OpenVINO models (``nncf.compress_weights``), and
the compressed IR is what the OpenVINO backend caches, so compression costs once per model. Use it through the
OpenVINO backend's ``weight_compression="int8"`` (or ``"int8_sym"``, ``"int4_sym"``, ``"int4_asym"``).
"""

from __future__ import annotations

from typing import Any

from modules.core.errors import UnsupportedError

MODES: dict[str, str] = {"int8": "INT8_ASYM", "int8_asym": "INT8_ASYM", "int8_sym": "INT8_SYM",
                         "int4_sym": "INT4_SYM", "int4_asym": "INT4_ASYM"}


def nncf_available() -> tuple[bool, str]:
    import importlib.util

    if importlib.util.find_spec("nncf") is None:
        return False, "the nncf package is not installed (pip install nncf)"
    return True, "nncf is installed"


def compress_ov_model(model: Any, mode: str = "int8") -> Any:
    available, reason = nncf_available()
    if not available:
        raise UnsupportedError(f"NNCF weight compression cannot run here: {reason}")
    if mode not in MODES:
        raise UnsupportedError(f"NNCF weight compression mode {mode!r} is not one of {', '.join(MODES)}")
    import nncf

    return nncf.compress_weights(model, mode=getattr(nncf.CompressWeightsMode, MODES[mode]))
