"""Two always-on scripts written the way real A1111 extensions are (Gradio 3.41 API).

"Fixture sizes" keeps the tab's width slider from ``after_component`` and wires a button to it in ``ui()``, and
hides a row with ``visible=False`` (an aspect-ratio helper does both). "Fixture broken UI" registers a listener on a
component it never found (``None``) and so fails half-way through its ``ui()``.
"""

import gradio as gr

from modules import scripts


class FixtureSizes(scripts.Script):
    def __init__(self):
        super().__init__()
        self.width = None

    def title(self):
        return "Fixture sizes"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def after_component(self, component, **kwargs):
        if isinstance(component, gr.components.Slider) and kwargs.get("elem_id") == f"{self.tabname}_width":
            self.width = component

    def ui(self, is_img2img):
        with gr.Group(), gr.Accordion("Fixture sizes", open=True):
            with gr.Row(visible=False, elem_id=f"fixture_hidden_row_{self.tabname}"):
                gr.Textbox(value="kept out of sight", label="Fixture hidden")
            gr.Button("Double the width", elem_id=f"fixture_double_{self.tabname}").click(
                fn=lambda width: width * 2, inputs=[self.width], outputs=[self.width])


class FixtureBrokenUi(scripts.Script):
    def title(self):
        return "Fixture broken UI"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        never_found = None
        button = gr.Button("Never wired", elem_id=f"fixture_broken_{self.tabname}")
        button.click(fn=lambda value: value, inputs=[never_found], outputs=[])
        return []
