"""Extensions in ``extensions/<name>/scripts`` work unchanged: UI registration, API args, hooks, isolation."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from modules.core.errors import UserInputError
from modules.processing.params import Img2ImgParams, Txt2ImgParams


def test_discovery_titles_and_failures(easel: Any) -> None:
    scripts = easel.scripts
    titles = scripts.titles(False)
    assert "double steps" in titles and "x/y/z plot" in titles and "prompt matrix" in titles
    assert "tag everything" not in titles  # always-on scripts are not selectable
    assert "disabled one" not in titles  # disabled_extensions
    assert "sd upscale" in scripts.titles(True) and "sd upscale" not in titles
    assert any(error.owner == "broken" and "does_not_exist_anywhere" in error.message for error in scripts.errors)
    assert {info["name"] for info in scripts.extensions_info()} == {"broken", "crashy", "offext", "thirdparty"}
    assert [info["enabled"] for info in scripts.extensions_info() if info["name"] == "offext"] == [False]


def test_ui_defaults_and_script_info(easel: Any) -> None:
    scripts = easel.scripts
    runner = scripts.runner(False)
    tag = runner.script("Tag Everything")
    assert runner.defaults[tag.args_from:tag.args_to] == [False, "default-tag"]
    info = {entry["name"]: entry for entry in scripts.script_info() if not entry["is_img2img"]}
    assert info["tag everything"]["is_alwayson"] is True
    assert [arg["label"] for arg in info["tag everything"]["args"]] == ["Enabled", "Tag"]
    factor = info["double steps"]["args"][0]
    assert (factor["value"], factor["minimum"], factor["maximum"], factor["step"]) == (2, 1, 4, 1)
    # the UI renders the same objects, laid out
    objects = scripts.scripts(False)
    assert objects[0].alwayson and all(o.args_to is not None for o in objects)


def test_validate_api_arguments(easel: Any) -> None:
    scripts = easel.scripts
    with pytest.raises(UserInputError) as unknown:
        scripts.validate(Txt2ImgParams(script_name="no such script"))
    assert unknown.value.status_code == 422 and unknown.value.field == "script_name"
    with pytest.raises(UserInputError) as selectable:
        scripts.validate(Txt2ImgParams(alwayson_scripts={"Double Steps": {"args": [2]}}))
    assert selectable.value.status_code == 422
    with pytest.raises(UserInputError):
        scripts.validate(Txt2ImgParams(alwayson_scripts={"nope": {"args": []}}))
    with pytest.raises(UserInputError):  # SD upscale is img2img only
        scripts.validate(Txt2ImgParams(script_name="sd upscale"))
    args = scripts.validate(Img2ImgParams(script_name="SD upscale", script_args=["", 8, "Lanczos", 2.0]))
    upscale = scripts.runner(True).script("sd upscale")
    assert args[0] == scripts.runner(True).selectable_scripts.index(upscale) + 1
    assert args[upscale.args_from:upscale.args_to] == ["", 8, "Lanczos", 2.0]


def test_alwayson_script_via_params(easel: Any, txt2img: Any) -> None:
    plain = txt2img(prompt="a red circle")
    tagged = txt2img(prompt="a red circle", alwayson_scripts={"tag everything": {"args": [True, "hello"]}})
    assert "Tagged: hello" in tagged.infotexts[0] and "Tagged" not in plain.infotexts[0]
    # postprocess_image replaced the picture with its inverse
    assert np.array_equal(255 - np.asarray(plain.images[0]), np.asarray(tagged.images[0]))


def test_selectable_script_via_params(easel: Any, txt2img: Any) -> None:
    result = txt2img(prompt="a cat", steps=2, script_name="Double Steps", script_args=[3])
    assert "Steps: 6" in result.infotexts[0] and "Doubled: png" in result.infotexts[0]
    direct = txt2img(prompt="a cat", steps=6)
    assert np.array_equal(np.asarray(direct.images[0]), np.asarray(result.images[0]))


def test_crashing_extension_is_isolated(easel: Any, txt2img: Any, caplog: pytest.LogCaptureFixture) -> None:
    registry = easel.callbacks
    before = len(registry.errors)
    with caplog.at_level(logging.ERROR):
        result = txt2img(prompt="a dog", steps=2)
    assert len(result.images) == 1
    assert any(error.owner == "crashy" and "boom in cfg" in error.message for error in registry.errors[before:])
    assert "crashy" in caplog.text and "boom in process" in caplog.text
    # the other extension's CFG callback still ran at every step, with the batched (uncond + cond) input
    module = type(easel.scripts.runner(False).script("tag everything"))
    calls = __import__(module.__module__, fromlist=["CFG_CALLS"]).CFG_CALLS
    assert [step for step, _ in calls[-2:]] == [0, 1] and calls[-1][1][0] == 2


def test_install_py_needs_consent(easel: Any) -> None:
    # crashy/install.py exits non-zero if run; without --allow-extension-install it was skipped
    assert easel.settings.flags.allow_extension_install is False
    assert easel.startup_error is None


def test_facade_shared_and_processing(easel: Any) -> None:
    from modules import shared
    from modules.processing import StableDiffusionProcessingTxt2Img, create_infotext, fix_seed

    assert shared.opts.samples_format == "png"
    shared.opts.jpeg_quality = 55
    assert easel.settings.options.jpeg_quality == 55 and shared.opts.data["jpeg_quality"] == 55
    shared.opts.add_option("my_ext_strength", shared.OptionInfo(0.5, "Strength"))
    assert shared.opts.my_ext_strength == 0.5
    assert shared.state.interrupted is False
    shared.state.job_count = 4
    assert shared.state.job_count == 4
    assert shared.cmd_opts.lora_dir.endswith("Lora") and shared.cmd_opts.no_such_flag is None
    assert shared.sd_model is None or hasattr(shared.sd_model, "unet")
    p = StableDiffusionProcessingTxt2Img(prompt="a cat", steps=5, width=64, height=64, sd_model=None,
                                         outpath_samples="x", do_not_save_grid=True)
    assert (p.steps, p.width, p.outpath_samples, p.seed) == (5, 64, "x", -1)
    fix_seed(p)
    assert p.seed >= 0
    text = create_infotext(p, ["a cat"], [p.seed], [p.subseed])
    assert text.startswith("a cat\n") and f"Seed: {p.seed}" in text


def test_scripts_work_on_their_defaults_where_gradio_cannot_be_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    """A headless worker (a GPU box with the processing core but no gradio) still validates and lays out requests:
    arguments are laid out from the scripts' ``api_args`` declarations, with their declared defaults."""
    import sys

    from modules.core.paths import REPO_ROOT
    from modules.extensions.scripts_service import ScriptsService

    service = ScriptsService(builtin_dirs=[REPO_ROOT / "scripts"], extension_roots=[])
    service.load()
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` now raises ImportError
    args = service.validate(Txt2ImgParams(script_name="prompt matrix", script_args=[True, False, "positive"]))
    runner = service.runner(False)
    assert runner.ui_ready
    matrix = runner.script("prompt matrix")
    assert args[0] == runner.selectable_scripts.index(matrix) + 1
    declared = list(matrix.api_args.model_fields)
    assert matrix.args_to - matrix.args_from == len(declared) > 3
    assert args[matrix.args_from:matrix.args_from + 3] == [True, False, "positive"]
    rest = [matrix.api_args.model_fields[name].default for name in declared[3:]]
    assert args[matrix.args_from + 3:matrix.args_to] == rest
    with pytest.raises(UserInputError) as bad:  # still checked against the declaration
        service.validate(Txt2ImgParams(script_name="prompt matrix", script_args=[True, False, "sideways"]))
    assert bad.value.field.startswith("script_args[2]")
