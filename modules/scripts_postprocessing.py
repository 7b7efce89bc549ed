"""A1111's ``modules.scripts_postprocessing``: the base class of extras-tab postprocessing scripts and the
image they process. Extension subclasses run in Easel's extras job (:mod:`modules.extensions.postprocessing`)."""

from __future__ import annotations

from typing import Any


class PostprocessedImageSharedInfo:
    target_width: int | None = None
    target_height: int | None = None


class PostprocessedImage:
    def __init__(self, image: Any) -> None:
        self.image = image
        self.info: dict[str, Any] = {}
        self.shared = PostprocessedImageSharedInfo()
        self.extra_images: list[Any] = []
        self.nametags: list[str] = []
        self.disable_processing = False
        self.caption: str | None = None

    def get_suffix(self, used_suffixes: Any = None) -> str:
        return "-".join(self.nametags)

    def create_copy(self, new_image: Any, *, nametags: Any = None, disable_processing: bool = False) -> Any:
        copy = PostprocessedImage(new_image)
        copy.nametags = list(self.nametags) + list(nametags or [])
        copy.disable_processing = disable_processing
        copy.info = dict(self.info)
        copy.shared = self.shared
        return copy


class ScriptPostprocessing:
    filename: str | None = None
    controls: Any = None
    args_from: int | None = None
    args_to: int | None = None
    order = 1000
    name: str | None = None
    group: Any = None

    def ui(self) -> dict[str, Any]:
        return {}

    def process(self, pp: PostprocessedImage, **args: Any) -> None:
        pass

    def process_firstpass(self, pp: PostprocessedImage, **args: Any) -> None:
        pass

    def image_changed(self) -> None:
        pass


def enable_checkbox(default: bool, elem_id: str) -> Any:
    from modules.ui_components import InputAccordion

    return InputAccordion(default, label="Enable", elem_id=elem_id)
