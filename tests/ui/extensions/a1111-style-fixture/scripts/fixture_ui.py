"""An A1111-style extension for Easel's UI tests, written against A1111 v1.10 and Gradio 3.41's API."""

import gradio as gr

from modules import script_callbacks, scripts, shared

SEEN_GLOBALLY = []


def on_ui_settings():
    section = ("fixture", "Fixture extension")
    shared.opts.add_option("fixture_greeting", shared.OptionInfo("Hello", "Greeting word", section=section))
    shared.opts.add_option("fixture_mode", shared.OptionInfo(
        "calm", "Greeting mode", gr.Radio, {"choices": ["calm", "loud"]}, section=section))


def on_ui_tabs():
    with gr.Blocks(analytics_enabled=False) as tab:
        with gr.Box():
            name = gr.Textbox(default="", label="Name", elem_id="fixture_name").style(container=False)
            greet = gr.Button("Greet", elem_id="fixture_greet", variant="tool")
        result = gr.Textbox(label="Greeting", elem_id="fixture_result", interactive=False)

        def say(text):
            word = shared.opts.fixture_greeting
            if shared.opts.fixture_mode == "loud":
                word = word.upper()
            return f"{word}, {text}!"

        # _js runs in the browser first: the name reaches Python upper-cased
        greet.click(fn=say, inputs=[name], outputs=[result], _js="(text) => [text.toUpperCase()]",
                    show_progress=False)
    return [(tab, "Fixture Tab", "fixture_tab")]


def on_after_component(component, **kwargs):
    if kwargs.get("elem_id") in ("txt2img_prompt", "txt2img_width"):
        SEEN_GLOBALLY.append(kwargs["elem_id"])


script_callbacks.on_ui_settings(on_ui_settings)
script_callbacks.on_ui_tabs(on_ui_tabs)
script_callbacks.on_after_component(on_after_component)


class FixtureScript(scripts.Script):
    def __init__(self):
        super().__init__()
        self.seen = []

    def title(self):
        return "Fixture UI"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def after_component(self, component, **kwargs):
        elem_id = kwargs.get("elem_id")
        if elem_id in ("txt2img_steps", "img2img_steps"):
            self.seen.append(elem_id)
        if elem_id == f"{'img2img' if self.is_img2img else 'txt2img'}_generation_info_button":
            gr.HTML(f"anchored under the {self.tabname} results", elem_id=f"fixture_anchor_{self.tabname}")

    def ui(self, is_img2img):
        with gr.Group():
            enabled = gr.Checkbox(default=False, label="Fixture enabled", elem_id=f"fixture_enabled_{self.tabname}")
            size = gr.inputs.Slider(1, 4, step=1, default=3, label="Fixture size")
            gr.Image(source="upload", tool="sketch", type="pil", label="Fixture sketch")
            choice = gr.Dropdown(["a", "b"], value="a", label="Fixture choice")
            echo = gr.Textbox(label="Fixture echo", elem_id=f"fixture_echo_{self.tabname}")
            choice.change(fn=lambda value: gr.Textbox.update(value=f"picked {value}"), inputs=[choice],
                          outputs=[echo])
            gr.HTML(f"seen: {', '.join(SEEN_GLOBALLY)} | script: {', '.join(self.seen)}",
                    elem_id=f"fixture_seen_{self.tabname}")
        # a pasted infotext sets these controls (A1111's paste of script fields)
        self.infotext_fields = [(enabled, "Fixture enabled"), (size, "Fixture size"),
                                (choice, lambda params: params.get("Fixture choice"))]
        return [enabled, size]
