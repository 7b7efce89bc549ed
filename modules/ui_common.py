"""A1111's ``modules.ui_common`` helpers for drop-in extension UIs (Gradio 6)."""

from __future__ import annotations

from modules.extensions.a1111_ui import (
    create_refresh_button,
    plaintext_to_html,
    save_files,
    setup_dialog,
    update_generation_info,
)

__all__ = ["create_refresh_button", "plaintext_to_html", "save_files", "setup_dialog", "update_generation_info"]
