"""Page wiring the way popular A1111 extensions do it: an ``on_ui_tabs`` tab whose button writes into the
generation tabs' prompts, found through the page's paste fields (``modules.ui.txt2img_paste_fields``, the
legacy name, and ``infotext_utils.paste_fields``)."""

import gradio as gr

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
    return [(tab, "Fixture Paste", "fixture_paste")]


script_callbacks.on_ui_tabs(on_ui_tabs)
