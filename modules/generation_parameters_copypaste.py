"""A1111's old name of ``modules.infotext_utils`` (extensions written before v1.8 import this one)."""

from modules.infotext_utils import *  # noqa: F403
from modules.infotext_utils import __all__  # noqa: F401
