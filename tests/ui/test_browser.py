"""The UI in a real browser: Playwright driving Debian's headless chromium against a real Easel server.

One server and one page walk through the flows a user does (the server start dominates the cost, so the steps
share it): generate with progress, Ctrl+Enter, PNG info -> txt2img paste, model switch in the quick-settings
bar, and a UI job queued behind an API job showing its position. Each step saves a screenshot to
``test-artifacts/ui/``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from modules.processing.params import Txt2ImgParams

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(900)]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
TIMEOUT_MS = 90_000

RECORD_PROGRESS = """
() => {
  window.__easelProgress = [];
  const target = document.querySelector('#txt2img_progress');
  const record = () => window.__easelProgress.push(target.innerText);
  new MutationObserver(record).observe(target, {subtree: true, childList: true, characterData: true});
}
"""


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def set_number(page: Any, elem_id: str, value: int | float) -> None:
    box = page.locator(f"#{elem_id} input[type=number]").first
    box.fill(str(value))
    box.press("Tab")


def wait_infotext(page: Any, text: str) -> str:
    locator = page.locator("#txt2img_infotext")
    locator.filter(has_text=text).wait_for(timeout=TIMEOUT_MS)
    return locator.inner_text()


def wait_until(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


def test_ui_end_to_end(easel_server: Any, browser: Any) -> None:
    services = easel_server.services
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(easel_server.url + "/")
    page.locator("#txt2img_prompt textarea").wait_for()
    shot(page, "01-loaded")

    # 0. the Script dropdown shows only the chosen script's controls; a script without controls leaves no strip
    matrix = page.locator("#txt2img_script_prompt_matrix")
    xyz = page.locator("#txt2img_script_x_y_z_plot")
    assert matrix.count() == 1 and xyz.count() == 1  # in the page for scripts' JavaScript, but not shown
    assert not matrix.is_visible() and not xyz.is_visible()
    assert page.locator("#txt2img_script_controlnet").first.bounding_box() is None
    page.locator("#txt2img_script_dropdown input").click()
    page.get_by_role("option", name="Prompt matrix").click()
    matrix.get_by_text("Put variable parts at start of prompt").wait_for(state="visible")
    assert not xyz.is_visible()
    page.locator("#txt2img_script_dropdown input").click()
    page.get_by_role("option", name="None", exact=True).click()
    matrix.wait_for(state="hidden")

    # 1. type a prompt, Generate, see progress, the image and its infotext
    set_number(page, "txt2img_width", 64)
    set_number(page, "txt2img_height", 64)
    set_number(page, "txt2img_steps", 3)
    page.locator("#txt2img_prompt textarea").fill("a red circle")
    page.evaluate(RECORD_PROGRESS)
    page.locator("#txt2img_generate").click()
    info = wait_infotext(page, "Steps: 3")
    page.locator("#txt2img_gallery img").first.wait_for()
    shot(page, "02-generated")
    seen = page.evaluate("window.__easelProgress")
    assert any(re.search(r"Queued|Generating|Step \d+/3|Waiting", text) for text in seen), seen
    assert "Done" in page.locator("#txt2img_progress").inner_text()
    assert info.startswith("a red circle")
    assert "Size: 64x64" in info and "Model: tiny-sd" in info
    seed = int(re.search(r"Seed: (\d+)", info).group(1))

    # 2. Ctrl+Enter generates too
    prompt = page.locator("#txt2img_prompt textarea")
    prompt.fill("a blue square")
    prompt.press("Control+Enter")
    info2 = wait_infotext(page, "a blue square")
    assert "Steps: 3" in info2
    shot(page, "03-ctrl-enter")

    # 3. PNG info: upload the first image, read its parameters, send them to txt2img
    first_png = next(p for p in services.image_store.list_outputs("txt2img") if p.infotext.startswith("a red"))
    page.get_by_role("tab", name="PNG info").click()
    page.locator("#pnginfo_image input[type=file]").set_input_files(str(first_png.path))
    page.locator("#pnginfo_html_info").filter(has_text="Steps: 3").wait_for()
    shot(page, "04-pnginfo")
    page.locator("#pnginfo_send_to_txt2img").click()
    page.locator("#txt2img_prompt textarea").wait_for(state="visible")
    wait_until(lambda: page.locator("#txt2img_prompt textarea").input_value() == "a red circle")
    assert int(float(page.locator("#txt2img_seed input").input_value())) == seed
    assert page.locator("#txt2img_steps input[type=number]").first.input_value() == "3"
    shot(page, "05-pasted")

    # 4. switch the model in the quick-settings bar; the next image is made by it
    page.locator("#setting_sd_model_checkpoint input").click()
    page.get_by_role("option", name=re.compile(r"^tiny-sd-2")).click()
    wait_until(lambda: str(services.settings.options.sd_model_checkpoint).startswith("tiny-sd-2"))
    set_number(page, "txt2img_seed", -1)
    page.locator("#txt2img_prompt textarea").fill("a green triangle")
    page.locator("#txt2img_generate").click()
    info3 = wait_infotext(page, "a green triangle")
    assert "Model: tiny-sd-2" in info3
    shot(page, "06-model-switched")

    # 5. a UI job waits behind a long API job and shows its queue position
    long_job = services.queue.submit("txt2img", Txt2ImgParams(prompt="long api job", steps=1000, width=64,
                                                              height=64).model_dump(mode="json"), source="api")
    wait_until(lambda: services.queue.position(long_job.id) == 0)
    page.locator("#txt2img_prompt textarea").fill("a yellow dog")
    page.locator("#txt2img_generate").click()
    page.locator("#txt2img_progress").filter(has_text="Waiting: 1 job ahead").wait_for()
    shot(page, "07-queued-behind-api")
    services.queue.cancel(long_job.id)
    wait_infotext(page, "a yellow dog")
    shot(page, "08-after-queue")

    # 6. face restoration: the txt2img checkbox and the extras sliders; without a model the note says what to install
    assert page.locator("#txt2img_restore_faces input[type=checkbox]").is_visible()
    page.get_by_role("tab", name="Extras").click()
    for name in ("gfpgan_visibility", "codeformer_visibility", "codeformer_weight"):
        assert page.locator(f"#extras_{name} input[type=range]").is_visible()
    page.locator("#extras_image input[type=file]").set_input_files(str(first_png.path))
    set_number(page, "extras_gfpgan_visibility", 1)
    page.locator("#extras_generate").click()
    page.locator("#extras_message").filter(has_text="no GFPGAN model is installed").wait_for()
    page.locator("#extras_gallery img").first.wait_for()
    shot(page, "09-extras-face-note")
    page.close()


def test_auth_protects_the_ui(models_dir_two: Path, tmp_path: Path, browser: Any) -> None:
    """With --auth the UI needs the credentials (the API's middleware guards every route, the UI included)."""
    from tests.ui.conftest import run_server

    with run_server(["--data-dir", str(tmp_path / "data"), "--models-dir", str(models_dir_two), "--use-cpu",
                     "--auth", "alice:secret"]) as running:
        anonymous = browser.new_context()
        # (a page navigation without credentials ends in net::ERR_INVALID_AUTH_CREDENTIALS: ask via the API client)
        assert anonymous.request.get(running.url + "/").status == 401
        anonymous.close()
        context = browser.new_context(http_credentials={"username": "alice", "password": "secret"})
        page = context.new_page()
        response = page.goto(running.url + "/")
        assert response is not None and response.status == 200
        page.locator("#txt2img_prompt textarea").wait_for(timeout=TIMEOUT_MS)
        shot(page, "09-auth")
        context.close()
