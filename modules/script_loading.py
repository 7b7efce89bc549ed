"""A1111's ``modules.script_loading``: load a Python file as a module, and run extensions' ``preload.py``."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any


def load_module(path: str) -> ModuleType:
    name = "easel_loaded_" + "".join(ch if ch.isalnum() else "_" for ch in Path(path).stem)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a loadable Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def preload_extensions(extensions_dir: str, parser: argparse.ArgumentParser, extension_list: Any = None) -> None:
    from modules.extensions.preload import preload_extensions as run_preloads

    run_preloads(parser, [], [Path(extensions_dir)])
