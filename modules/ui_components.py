"""A1111's ``modules.ui_components`` built on Gradio 6, for drop-in extension UIs.

Each class keeps A1111's name and constructor keywords and renders as the Gradio component it extends
(``get_block_name``), so the browser needs no extra component code. ``InputAccordion`` is A1111's checkbox
whose value is whether its accordion is open: use it as ``with InputAccordion(False, label="x") as enabled:``
and return ``enabled`` from ``ui()``; opening or closing the accordion changes the value and setting the value
opens or closes it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import gradio as gr


@contextlib.contextmanager
def _without_pyi_files() -> Iterator[None]:
    """Gradio writes a ``.pyi`` stub beside every component class it sees defined; not for these."""
    import gradio.component_meta as meta

    original = meta.create_or_modify_pyi
    meta.create_or_modify_pyi = lambda *args, **kwargs: None
    try:
        yield
    finally:
        meta.create_or_modify_pyi = original


with _without_pyi_files():
    class FormComponent:
        """Marker base of A1111's form components (the UI lays them out as form items)."""

        webui_do_not_create_gradio_pyi_thanks = True

        def get_expected_parent(self) -> type[Any]:
            return gr.components.Form


    class ToolButton(gr.Button, FormComponent):
        """A small square button holding one symbol (A1111's 🔄/📋 buttons)."""

        def __init__(self, value: str = "", *args: Any, **kwargs: Any) -> None:
            classes = list(kwargs.pop("elem_classes", []) or [])
            super().__init__(value, *args, elem_classes=["tool", *classes], **kwargs)

        def get_block_name(self) -> str:
            return "button"


    class ResizeHandleRow(gr.Row):
        def __init__(self, **kwargs: Any) -> None:
            classes = list(kwargs.pop("elem_classes", []) or [])
            super().__init__(elem_classes=["resize-handle-row", *classes], **kwargs)

        def get_block_name(self) -> str:
            return "row"


    class FormRow(gr.Row, FormComponent):
        def get_block_name(self) -> str:
            return "row"


    class FormColumn(gr.Column, FormComponent):
        def get_block_name(self) -> str:
            return "column"


    class FormGroup(gr.Group, FormComponent):
        def get_block_name(self) -> str:
            return "group"


    class FormHTML(gr.HTML, FormComponent):
        def get_block_name(self) -> str:
            return "html"


    class FormColorPicker(gr.ColorPicker, FormComponent):
        def get_block_name(self) -> str:
            return "colorpicker"


    class DropdownMulti(gr.Dropdown, FormComponent):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["multiselect"] = True
            super().__init__(*args, **kwargs)

        def get_block_name(self) -> str:
            return "dropdown"


    class DropdownEditable(gr.Dropdown, FormComponent):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["allow_custom_value"] = True
            super().__init__(*args, **kwargs)

        def get_block_name(self) -> str:
            return "dropdown"


    class InputAccordion(gr.Checkbox):
        """A checkbox shown as an accordion: the value is True while the accordion is open (A1111 semantics)."""

        global_index = 0

        def __init__(self, value: bool = False, **kwargs: Any) -> None:
            self.accordion_id = kwargs.get("elem_id")
            if self.accordion_id is None:
                self.accordion_id = f"input-accordion-{InputAccordion.global_index}"
                InputAccordion.global_index += 1
            label = kwargs.get("label", "Accordion")
            checkbox_kwargs = {**kwargs, "elem_id": f"{self.accordion_id}-checkbox", "visible": False,
                               "elem_classes": ["input-accordion-checkbox"]}
            super().__init__(bool(value), **checkbox_kwargs)
            self.accordion = gr.Accordion(label=label, open=bool(value), elem_id=self.accordion_id,
                                          elem_classes=["input-accordion"])
            self.accordion.expand(lambda: True, None, self, show_progress="hidden", queue=False)
            self.accordion.collapse(lambda: False, None, self, show_progress="hidden", queue=False)
            self.change(lambda checked: gr.Accordion(open=bool(checked)), self, self.accordion,
                        show_progress="hidden", queue=False)

        def extra(self) -> gr.Column:
            """A column at the right of the accordion's title, as A1111's (here: the first row inside it)."""
            return gr.Column(elem_id=f"{self.accordion_id}-extra", elem_classes="input-accordion-extra", min_width=0)

        def __enter__(self) -> InputAccordion:
            self.accordion.__enter__()
            return self

        def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
            self.accordion.__exit__(exc_type, exc_val, exc_tb)

        def get_block_name(self) -> str:
            return "checkbox"
