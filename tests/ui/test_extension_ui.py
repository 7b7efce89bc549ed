"""A1111-style extensions in the page: the fixture extension in ``tests/ui/extensions`` is written the way A1111
v1.10 extensions are (top-level ``onUiLoaded``/``DOMContentLoaded`` listeners, ``style.css``, ``on_ui_tabs``,
``on_ui_settings``, component callbacks, Gradio 3 calls in a tab and in ``Script.ui``).

One server serves a copy of it; the HTTP tests read the page and ``/file=``, one browser walk checks what the
user sees.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ui.conftest import ARTIFACTS, RunningServer, run_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

FIXTURE = Path(__file__).parent / "extensions" / "a1111-style-fixture"
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def extension_server(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("ext-ui")
    extension = root / "extensions" / "a1111-style-fixture"
    shutil.copytree(FIXTURE, extension)
    (extension / "tags").mkdir()
    (extension / "tags" / "colors.txt").write_text("red\ngreen\n")
    (extension / ".secret").write_text("token")
    outside = root / "outside.txt"
    outside.write_text("not an extension file")
    os.symlink(outside, extension / "tags" / "link-out.txt")
    with run_server(["--data-dir", str(root / "data"), "--models-dir", str(tiny_models_dir), "--use-cpu",
                     "--ckpt", "tiny-sd"], extension_roots=[root / "extensions"]) as running:
        yield running


def _get(server: RunningServer, path: str) -> Any:
    import httpx

    return httpx.get(server.url + path, timeout=30)


def test_page_head_carries_runtime_extension_scripts_styles_and_options(extension_server: RunningServer) -> None:
    page = _get(extension_server, "/").text
    head = page[:page.index("</head>")]
    runtime = head.index('data-easel-source="javascript/00_webui_runtime.js"')
    fixture = head.index('data-easel-source="a1111-style-fixture/javascript/fixture.js"')
    assert runtime < fixture  # the runtime's globals exist when extension scripts run their top level
    assert "#fixture_loaded_marker { color: rgb(1, 2, 3); }" in head
    options = json.loads(re.search(r"window.__easel_options = (\{.*?\});</script>", head).group(1))
    assert options["fixture_greeting"] == "Hello"  # an extension option, at its default
    assert options["sd_model_checkpoint"]  # and Easel's own


def test_file_route_serves_extension_files_only(extension_server: RunningServer) -> None:
    extension = extension_server.services.extension_roots[0] / "a1111-style-fixture"
    answer = _get(extension_server, f"/file={extension / 'tags' / 'colors.txt'}")
    assert answer.status_code == 200 and answer.text == "red\ngreen\n"
    assert _get(extension_server, "/file=javascript/00_webui_runtime.js").status_code == 200  # relative: web UI root
    refused = {
        "traversal": f"/file={extension}/../../outside.txt",
        "symlink out": f"/file={extension / 'tags' / 'link-out.txt'}",
        "hidden": f"/file={extension / '.secret'}",
        "folder": f"/file={extension / 'tags'}",
        "Easel source": "/file=webui.py",
        "system file": "/file=/etc/hostname",
        "missing": f"/file={extension / 'nope.txt'}",
    }
    for case, path in refused.items():
        answer = _get(extension_server, path)
        assert answer.status_code in (403, 404), (case, answer.status_code)
        assert "token" not in answer.text and "not an extension file" not in answer.text, case


@pytest.mark.browser
def test_extension_ui_in_the_browser(extension_server: RunningServer, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        walk_extension_ui(extension_server, page, errors)
    except Exception:
        shot(page, "ext-failure")
        raise
    finally:
        page.close()


def walk_extension_ui(extension_server: RunningServer, page: Any, errors: list[str]) -> None:
    page.goto(extension_server.url + "/")
    page.wait_for_function("window.__fixture && window.__fixture.loadedCalls === 1")
    page.wait_for_function("window.__fixture.optionsAvailable === 1")  # as in A1111: opts fill after the load

    # top-level listeners ran, onUiLoaded saw the whole first tab, style.css applies, opts holds the options
    state = page.evaluate("window.__fixture")
    assert state["domContentLoaded"] is True and state["optionsAvailable"] == 1 and state["greeting"] == "Hello"
    marker = page.locator("#fixture_loaded_marker")
    assert marker.inner_text() == "fixture saw 1 prompt"
    assert page.evaluate("getComputedStyle(document.querySelector('#fixture_loaded_marker')).color") == \
        "rgb(1, 2, 3)"
    assert page.evaluate("gradioApp().querySelector('#img2img_prompt textarea') !== null")  # other tabs exist too
    assert page.evaluate("get_uiCurrentTabContent().id") == "tab_txt2img"

    # component callbacks saw Easel's components with A1111's elem_ids; a script anchored UI on one of them
    assert page.locator("#fixture_seen_txt2img").inner_text() == \
        "seen: txt2img_prompt, txt2img_width | script: txt2img_steps"
    assert page.locator("#fixture_anchor_txt2img").inner_text() == "anchored under the txt2img results"
    assert page.locator("#fixture_anchor_img2img").count() == 1

    # Gradio 3 calls in Script.ui: gr.inputs.Slider(default=), Image(source=, tool=), Textbox.update
    assert page.locator("#txt2img_script_fixture_ui input[type=number]").first.input_value() == "3"

    # a script wired to the width slider it kept from after_component; its visible=False row stays hidden; the
    # script whose ui() failed half-way cost only its own controls (the page built, no page error)
    assert page.locator("#fixture_hidden_row_txt2img").count() == 1
    assert not page.locator("#fixture_hidden_row_txt2img").is_visible()
    width = page.locator("#txt2img_width input[type=number]").first
    before = int(float(width.input_value()))
    page.locator("#fixture_double_txt2img").click()
    page.wait_for_function(f"document.querySelector('#txt2img_width input[type=number]').value == '{2 * before}'")
    page.locator("#txt2img_script_fixture_ui").get_by_label("Fixture choice").click()
    page.get_by_role("option", name="b").click()
    page.wait_for_function("document.querySelector('#fixture_echo_txt2img textarea').value === 'picked b'")
    shot(page, "ext-01-txt2img")

    # the on_ui_tabs tab: gr.Box, .style(), _js= runs in the browser first, then Python answers
    page.get_by_role("tab", name="Fixture Tab").click()
    page.locator("#fixture_name textarea").fill("world")
    page.locator("#fixture_greet").click()
    result = page.locator("#fixture_result textarea")
    page.wait_for_function("document.querySelector('#fixture_result textarea').value !== ''")
    assert result.input_value() == "Hello, WORLD!"
    assert page.locator("#fixture_greet").get_attribute("title") == "Say hello with the configured greeting"
    assert page.evaluate("window.__fixture.tabs") == ["Text", "Fixture Tab"]
    shot(page, "ext-02-tab")

    # on_ui_settings options in Settings, saved by Apply settings; opts and onOptionsChanged follow
    page.get_by_role("tab", name="Settings").click()
    page.locator("#settings_fixture").get_by_text("Fixture extension").click()
    page.locator("#setting_fixture_greeting textarea").fill("Howdy")
    page.locator("#setting_fixture_mode").get_by_label("loud").check()
    page.locator("#settings_submit").click()
    page.wait_for_function("window.__fixture.greeting === 'Howdy'")
    assert page.evaluate("opts.fixture_mode") == "loud"
    shot(page, "ext-03-settings")
    options = extension_server.services.settings.options
    assert (options.fixture_greeting, options.fixture_mode) == ("Howdy", "loud")  # type: ignore[attr-defined]
    saved = json.loads((extension_server.services.settings.data_paths.root / "config.json").read_text())
    assert saved["fixture_greeting"] == "Howdy"
    page.get_by_role("tab", name="Fixture Tab").click()
    page.locator("#fixture_greet").click()
    page.wait_for_function("document.querySelector('#fixture_result textarea').value === 'HOWDY, WORLD!'")
    assert errors == []


@pytest.mark.browser
def test_extension_reaches_page_parts_as_in_a1111(extension_server: RunningServer, browser: Any) -> None:
    """A tab wired to the prompts through the paste fields; the footer's release, gallery globals and output
    button rows that extension scripts read or extend."""
    from modules.extensions.a1111_ui import A1111_COMPATIBLE_VERSION

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(extension_server.url + "/")
        page.wait_for_function("window.__page !== undefined")
        state = page.evaluate("window.__page")
        assert state == {"version": A1111_COMPATIBLE_VERSION, "txt2imgGallery": "txt2img_gallery",
                         "img2imgGallery": "img2img_gallery"}
        for tab in ("txt2img", "img2img", "extras"):
            assert page.locator(f"#image_buttons_{tab} #fixture_clone_{tab}").count() == 1, tab
        assert page.locator("#fixture_broken_send").count() == 0  # its tab failed: not in the page, page unharmed

        page.get_by_role("tab", name="Fixture Paste").click()
        page.locator("#fixture_words textarea").fill("sunset")
        page.locator("#fixture_add_words").click()
        page.wait_for_function("document.querySelector('#txt2img_prompt textarea').value !== ''")
        assert page.locator("#txt2img_prompt textarea").input_value() == "sunset, masterpiece"
        assert page.locator("#img2img_neg_prompt textarea").input_value() == "not sunset"

        # "send to" buttons registered as ParamBindings: infotext pasted into the tab's fields, image carried over
        page.locator("#fixture_infotext textarea").fill(
            "a lighthouse\nNegative prompt: fog\nSteps: 7, Sampler: Euler, CFG scale: 5, Seed: 42, Size: 64x96, "
            "Fixture enabled: True, Fixture size: 2, Fixture choice: b")
        page.locator("#txt2img_tab").click()
        page.wait_for_function("document.querySelector('#txt2img_prompt textarea').value === 'a lighthouse'")
        assert page.locator("#tab_txt2img").is_visible()
        assert page.locator("#txt2img_neg_prompt textarea").input_value() == "fog"
        assert page.locator("#txt2img_steps input[type=number]").input_value() == "7"
        assert page.locator("#txt2img_height input[type=number]").input_value() == "96"
        # the script's infotext_fields took their values too (its choice's change event ran)
        assert page.locator("#fixture_enabled_txt2img input[type=checkbox]").is_checked()
        assert page.locator("#txt2img_script_fixture_ui input[type=number]").first.input_value() == "2"
        page.wait_for_function("document.querySelector('#fixture_echo_txt2img textarea').value === 'picked b'")
        page.get_by_role("tab", name="Fixture Paste").click()
        page.locator("#img2img_tab").click()
        page.wait_for_function("document.querySelector('#img2img_prompt textarea').value === 'a lighthouse'")
        assert page.locator("#tab_img2img").is_visible()
        page.locator("#img2img_image img").first.wait_for()  # the fixture's picture is the img2img input now
        assert errors == []
    except Exception:
        shot(page, "ext-page-failure")
        raise
    finally:
        page.close()


@pytest.mark.browser
def test_localization_from_an_extension_translates_the_page(extension_server: RunningServer, browser: Any) -> None:
    """A localization extension's ``localizations/<name>.json``, chosen with the ``localization`` setting: labels,
    buttons, placeholders and hover titles are shown translated; what the user types is not."""
    import httpx

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    try:
        head = _get(extension_server, "/").text
        assert "window.localization = {};" in head  # "None": nothing to translate
        answer = httpx.post(extension_server.url + "/sdapi/v1/options", json={"localization": "fixture_de"},
                            timeout=30)
        assert answer.status_code == 200, answer.text
        head = _get(extension_server, "/").text
        translations = json.loads(re.search(r"window.localization = (\{.*?\});</script>", head).group(1))
        assert translations["Generate"] == "Erzeugen"

        page.goto(extension_server.url + "/")
        page.wait_for_function("window.easelRuntime && easelRuntime.loaded")
        assert page.locator("#txt2img_generate").inner_text().strip() == "Erzeugen"
        assert page.locator("#txt2img_steps").get_by_text("Schritte").count() == 1
        assert page.locator("#txt2img_prompt textarea").get_attribute("placeholder") == "Eingabe (Strg+Enter erzeugt)"
        page.wait_for_function("(document.querySelector('#txt2img_steps [data-easel-original]') || {}).title === "
                               "'Wie oft das Bild verfeinert wird'")
        page.get_by_role("tab", name="Fixture Paste").click()
        assert page.locator("#fixture_words").get_by_text("Auslösewörter").count() == 1  # an extension tab's label
        page.locator("#fixture_words textarea").fill("a lighthouse")  # typed text that has a translation
        page.wait_for_timeout(500)
        assert page.locator("#fixture_words textarea").input_value() == "a lighthouse"
        page.get_by_role("tab", name="Settings").click()
        assert page.locator("#setting_page_localization").count() == 1  # chosen in Settings, as in A1111
    finally:
        httpx.post(extension_server.url + "/sdapi/v1/options", json={"localization": "None"}, timeout=30)
        page.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_script_ui_pass_without_a_page_shows_scripts_the_standard_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--nowebui``: the runner's pass shows the scripts stand-ins of the tab's fields (a script finds the width
    slider it looks for), and a script whose ui() fails half-way loses only its own arguments."""
    from modules.core.paths import REPO_ROOT
    from modules.extensions.scripts_service import ScriptsService
    from modules.extensions.ui_pass import PageState

    monkeypatch.setattr(PageState, "built", False)
    service = ScriptsService(builtin_dirs=[REPO_ROOT / "scripts"], extension_roots=[FIXTURE.parent])
    service.load()
    runner = service.runner(False)
    sizes = runner.script("fixture sizes")
    assert sizes is not None and sizes.width is not None and sizes.width.elem_id == "txt2img_width"
    assert any(error.message and "Fixture broken UI.ui" in error.where for error in service.errors), service.errors
    matrix = runner.script("prompt matrix")
    assert runner.defaults[matrix.args_from:matrix.args_from + 3] == [False, False, "positive"]
