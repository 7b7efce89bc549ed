"""Extensions: the installed extensions and their enabled state (the ``disabled_extensions`` option)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from modules.core.errors import EaselError
from modules.ui.context import UiContext


def installed_extensions(root: Path) -> list[Path]:
    """Extension folders: direct, non-hidden sub-folders of ``extensions/``."""
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))),
                  key=lambda p: p.name.lower())


def extension_rows(ctx: UiContext) -> list[list[Any]]:
    disabled = set(ctx.options.disabled_extensions)
    scripts = ctx.services.scripts
    status = {entry["name"]: entry for entry in scripts.extension_status()} if scripts is not None else {}
    rows = []
    for folder in installed_extensions(ctx.extensions_root()):
        parts = [name for name in ("scripts", "javascript") if (folder / name).is_dir()]
        state = "disabled" if folder.name in disabled else "enabled"
        entry = status.get(folder.name)
        if entry is not None and entry["status"] in ("incompatible", "error") and state == "enabled":
            state = f"{entry['status']}: {entry['reason']}"  # loaded at start-up: why it does not run
        rows.append([folder.name, state, ", ".join(parts), str(folder)])
    return rows


def build_extensions_tab(ctx: UiContext) -> None:
    names = [folder.name for folder in installed_extensions(ctx.extensions_root())]
    disabled = set(ctx.options.disabled_extensions)
    table = gr.Dataframe(extension_rows(ctx), headers=["Extension", "State", "Has", "Path"], interactive=False,
                         elem_id="extensions_table")
    enabled = gr.CheckboxGroup(names, value=[name for name in names if name not in disabled],
                               label="Enabled extensions", elem_id="extensions_enabled")
    with gr.Row():
        apply = gr.Button("Apply (restart to take effect)", variant="primary", elem_id="extensions_apply")
        refresh = gr.Button("🔄 Refresh", elem_id="extensions_refresh", size="sm")
    status = gr.Markdown("", elem_id="extensions_status")

    def do_apply(chosen: list[str]) -> tuple[str, Any]:
        all_names = [folder.name for folder in installed_extensions(ctx.extensions_root())]
        keep_unknown = [name for name in ctx.options.disabled_extensions if name not in all_names]
        new_disabled = keep_unknown + [name for name in all_names if name not in set(chosen or [])]
        try:
            ctx.settings.update_options({"disabled_extensions": new_disabled})
        except EaselError as exc:
            return f"⚠️ {exc.message}", gr.update()
        return ("Saved. Disabled: " + (", ".join(new_disabled) or "none") + ". Restart Easel to apply.",
                extension_rows(ctx))

    apply.click(do_apply, enabled, [status, table], show_progress="hidden")

    def do_refresh() -> tuple[Any, Any]:
        all_names = [folder.name for folder in installed_extensions(ctx.extensions_root())]
        off = set(ctx.options.disabled_extensions)
        return extension_rows(ctx), gr.update(choices=all_names, value=[n for n in all_names if n not in off])

    refresh.click(do_refresh, None, [table, enabled], show_progress="hidden")
