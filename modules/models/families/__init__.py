"""Model families: recognise a checkpoint (folder or single file) and load it offline with the right pipeline.

Adding a family = one module defining a `ModelFamily` subclass + one `register()` line below.
"""

from modules.models.families.base import (
    CONFIGS_DIR,
    CheckpointHeader,
    FamilyError,
    FolderConfigs,
    ModelFamily,
    PickleRefusedError,
    TensorInfo,
)
from modules.models.families.header import read_header
from modules.models.families.playground import PlaygroundV25
from modules.models.families.registry import FAMILIES, detect, get_family, ordered_families, register
from modules.models.families.sd2 import SD2, SD2V
from modules.models.families.sd15 import SD15, SD15Inpaint
from modules.models.families.sdxl import SDXL, SDXLInpaint
from modules.models.families.sdxl_refiner import SDXLRefiner

register(SD15())
register(SD15Inpaint())
register(SD2())
register(SD2V())
register(SDXL())
register(SDXLInpaint())
register(SDXLRefiner())
register(PlaygroundV25())

__all__ = [
    "CONFIGS_DIR",
    "FAMILIES",
    "CheckpointHeader",
    "FamilyError",
    "FolderConfigs",
    "ModelFamily",
    "PickleRefusedError",
    "TensorInfo",
    "detect",
    "get_family",
    "ordered_families",
    "read_header",
    "register",
]
