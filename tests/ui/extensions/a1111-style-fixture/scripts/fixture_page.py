"""Page wiring the way popular A1111 extensions do it: an ``on_ui_tabs`` tab whose button writes into the
generation tabs' prompts, found through the page's paste fields (``modules.ui.txt2img_paste_fields``, the
legacy name, and ``infotext_utils.paste_fields``), and "send to" buttons registered as ``ParamBinding``s (an
image browser's "send to txt2img/img2img")."""

import gradio as gr
from PIL import Image

import modules.ui
from modules import infotext_utils, script_callbacks


def on_ui_tabs():
    txt2img_prompt = modules.ui.txt2img_paste_fields[0][0]
    img2img_negative = infotext_utils.paste_fields["img2img"]["fields"][1].component
    with gr.Blocks(analytics_enabled=False) as tab:
        words = gr.Textbox(label="Trigger words", elem_id="fixture_words")
        add = gr.Button("Add trigger words", elem_id="fixture_add_words")
        add.click(fn=lambda text: (f"{text}, masterpiece", f"not {text}"), inputs=[words],
                  outputs=[txt2img_prompt, img2img_negative])

        picture = gr.Image(value=Image.new("RGB", (48, 32), (200, 30, 30)), type="pil", label="Fixture picture",
                           elem_id="fixture_picture")
        infotext = gr.Textbox(label="Fixture infotext", elem_id="fixture_infotext", lines=3)
        buttons = infotext_utils.create_buttons(["txt2img", "img2img"])
        infotext_utils.register_paste_params_button(infotext_utils.ParamBinding(
            paste_button=buttons["txt2img"], tabname="txt2img", source_text_component=infotext,
            source_image_component=picture))
        infotext_utils.bind_buttons({"img2img": buttons["img2img"]}, picture, infotext)
    return [(tab, "Fixture Paste", "fixture_paste")]


def on_ui_tabs_broken():
    # registers a "send to" button, then fails: the tab is not shown and its button must not break the page
    with gr.Blocks(analytics_enabled=False) as tab:
        text = gr.Textbox(label="Broken source")
        button = gr.Button("Broken send", elem_id="fixture_broken_send")
        infotext_utils.register_paste_params_button(infotext_utils.ParamBinding(
            paste_button=button, tabname="txt2img", source_text_component=text))
    raise RuntimeError(f"fixture tab failed after building {tab}")


script_callbacks.on_ui_tabs(on_ui_tabs)
script_callbacks.on_ui_tabs(on_ui_tabs_broken)
