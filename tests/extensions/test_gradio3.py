"""The Gradio 3 layer: extension code's old calls build on Gradio 6; Easel's own code keeps strict checks."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from modules.core.paths import REPO_ROOT
from modules.extensions import gradio3

gr = pytest.importorskip("gradio")

EXTENSION_UI = '''
import gradio as gr

def build():
    with gr.Blocks() as demo:
        with gr.Box(elem_id="box"):
            text = gr.Textbox(default="start", label="Text").style(container=False)
            image = gr.Image(source="upload", tool="sketch", type="pil", shape=(8, 8))
            button = gr.Button("Go", variant="tool")
            gallery = gr.Gallery().style(grid=3)
            slider = gr.inputs.Slider(0, 10, step=1, default=4, label="Slider")
            files = gr.File(type="file")
            hidden = gr.Checkbox(value=True, visible=False, elem_id="hidden_flag")
        dependency = button.click(fn=lambda v: v, inputs=[text], outputs=[text], _js="(v) => [v + '!']",
                                  show_progress=False)
        dependency.then(fn=None, _js="() => {}")
        update = gr.Dropdown.update(choices=["a", "b"], value="b", visible=True)
    return demo, text, image, button, gallery, slider, files, update, hidden
'''


@pytest.fixture(scope="module")
def extension_module(tmp_path_factory: pytest.TempPathFactory) -> Any:
    gradio3.install()
    path = tmp_path_factory.mktemp("ext") / "old_ui.py"
    path.write_text(textwrap.dedent(EXTENSION_UI))
    namespace: dict[str, Any] = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return namespace


def test_gradio3_calls_from_extension_code_build(extension_module: Any) -> None:
    demo, text, image, button, gallery, slider, files, update, hidden = extension_module["build"]()
    assert text.value == "start" and text.container is False
    assert image.sources == ["upload"] and image.type == "pil"
    assert button.variant == "secondary"
    assert gallery.columns == 3
    assert slider.value == 4 and slider.maximum == 10
    assert files.type == "filepath"
    assert hidden.visible == "hidden"  # in the page, not shown: extension scripts find it by id
    assert update == {"__type__": "update", "choices": ["a", "b"], "value": "b", "visible": True}
    js = [fn.js for fn in demo.fns.values()]
    assert js == ["(v) => [v + '!']", "() => {}"]
    shown = next(fn for fn in demo.fns.values() if fn.js == "(v) => [v + '!']")
    assert shown.show_progress == "hidden"
    box = next(block for block in demo.blocks.values() if block.elem_id == "box")
    assert isinstance(box, gr.Group) and box.get_block_name() == "group"  # a type the browser renders


def test_star_args_subclass_keeps_its_props() -> None:
    """A1111's ``class ToolButton(gr.Button): def __init__(self, *args, **kwargs)`` pattern still draws."""
    gradio3.install()

    class ToolButton(gr.Button):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, elem_classes=["tool"], **kwargs)

    with gr.Blocks():
        button = ToolButton("🔄", elem_id="refresh_x", variant="primary")
    config = button.get_config()
    assert (config["value"], config["elem_id"], config["variant"]) == ("🔄", "refresh_x", "primary")
    assert "tool" in config["elem_classes"]


def test_easel_code_keeps_gradio6_checks() -> None:
    gradio3.install()
    easel_file = str(REPO_ROOT / "modules" / "ui" / "generation.py")
    code = compile("gr.Textbox(default='x')", easel_file, "eval")
    with pytest.raises(TypeError, match="default"):
        eval(code, {"gr": gr})


@pytest.mark.parametrize(("path", "extension"), [
    (REPO_ROOT / "modules" / "ui" / "mount.py", False),
    (REPO_ROOT / "webui.py", False),
    (REPO_ROOT / "modules" / "ui_components.py", True),  # the A1111 façade extensions subclass
    (REPO_ROOT / "extensions" / "x" / "scripts" / "x.py", True),
    (Path("/anywhere/else.py"), True),
])
def test_which_code_counts_as_extension_code(path: Path, extension: bool) -> None:
    assert gradio3.is_extension_code(str(path)) is extension
