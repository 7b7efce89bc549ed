"""A1111 internals Easel does not have are refused with an error that names them (an ImportError, so guarded
imports keep working)."""

from __future__ import annotations

import importlib

import pytest

from modules.extensions.incompatible import IncompatibleSurfaceError, install_guard


@pytest.mark.parametrize(("module", "words"), [
    ("modules.ui_extra_networks", "Extra Networks card pages"),
    ("modules.ui_extra_networks_user_metadata", "metadata editor"),
    ("modules.sd_samplers_kdiffusion", "k-diffusion"),
])
def test_an_a1111_internal_is_refused_by_name(module: str, words: str) -> None:
    install_guard()
    with pytest.raises(IncompatibleSurfaceError) as refused:
        importlib.import_module(module)
    assert isinstance(refused.value, ImportError) and refused.value.module == module
    assert module in str(refused.value) and words in str(refused.value)


def test_a_guarded_import_of_an_internal_falls_back() -> None:
    install_guard()
    try:
        import modules.ui_extra_networks as pages
    except ImportError:
        pages = None
    assert pages is None
