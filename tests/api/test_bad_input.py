"""Bad-input corpus: every request a careless or hostile client sends gets a 4xx whose body is valid JSON and names
the field; never a 5xx, never a queued job. Covers non-finite numbers in every float field (also nested), integers
beyond every range, lone surrogates, wrong script argument types and ranges for each built-in script, malformed
job envelopes, oversized images and the resource limits."""

from __future__ import annotations

import json
import math
import resource
import struct
import time
import zlib
from typing import Any

import pytest
from PIL import Image

from tests.images import control_sketch, png_b64

HUGE = 2**70


def png_header(width: int, height: int, text: str | None = None) -> bytes:
    """A PNG that declares ``width x height`` but carries almost no pixel data: anything that decodes it fails,
    anything that reads only its header sees the size (and the text chunk) at once."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    parts = [b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))]
    if text is not None:
        parts.append(chunk(b"tEXt", b"parameters\x00" + text.encode("latin-1")))
    parts += [chunk(b"IDAT", zlib.compress(b"\x00" * 64)), chunk(b"IEND", b"")]
    return b"".join(parts)


def b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


SMALL = png_b64(Image.new("RGB", (64, 64), (120, 30, 200)))
SKETCH = png_b64(control_sketch(64))
HEADER_12K = b64(png_header(12000, 12000))  # 144 Mpx: beyond Pillow's warning, below its error
HEADER_9K = b64(png_header(9000, 9000))
HEADER_4K = b64(png_header(4000, 4000))
STRIP = png_b64(Image.new("RGB", (1, 2000), "white"))

T2I = "/sdapi/v1/txt2img"
I2I = "/sdapi/v1/img2img"
JOBS = "/sdapi/v2/jobs"
EXTRAS = "/sdapi/v1/extra-single-image"
DETECT = "/controlnet/detect"
NAN, INF, NINF = "NaN", "Infinity", "-Infinity"


def t2i(**fields: Any) -> dict[str, Any]:
    return {"prompt": "a red circle", "width": 64, "height": 64, "steps": 1, **fields}


def i2i(**fields: Any) -> dict[str, Any]:
    return {"prompt": "a red circle", "width": 64, "height": 64, "steps": 1, "init_images": [SMALL], **fields}


def raw(document: dict[str, Any], **literals: str) -> bytes:
    """JSON text with ``literals`` (NaN, Infinity...) spliced in as bare tokens: json.dumps cannot write them."""
    text = json.dumps({**document, **{key: f"@@{key}@@" for key in literals}})
    for key, literal in literals.items():
        text = text.replace(f'"@@{key}@@"', literal)
    return text.encode()


Case = tuple[str, str, Any, str]  # (id, path, body: dict or raw bytes, field the answer must name)


def _cases() -> list[Case]:
    cases: list[Case] = []
    # Non-finite numbers in every float field of every request model.
    floats = {
        T2I: (t2i(), ["subseed_strength", "cfg_scale", "eta", "denoising_strength", "s_min_uncond", "s_churn",
                      "s_tmax", "s_tmin", "s_noise", "refiner_switch_at", "hr_scale"]),
        I2I: (i2i(), ["image_cfg_scale", "initial_noise_multiplier", "denoising_strength", "cfg_scale"]),
        EXTRAS: ({"image": SMALL}, ["gfpgan_visibility", "codeformer_visibility", "codeformer_weight",
                                    "upscaling_resize", "extras_upscaler_2_visibility"]),
        DETECT: ({"controlnet_input_images": [SKETCH], "controlnet_module": "canny"},
                 ["controlnet_threshold_a", "controlnet_threshold_b"]),
    }
    for path, (base, names) in floats.items():
        for name in names:
            for literal in (NAN, INF, NINF):
                cases.append((f"{path}:{name}={literal}", path, raw(base, **{name: literal}), name))
    # The same inside the v2 envelope and in free-form fields.
    for name in ("eta", "s_churn", "s_noise", "cfg_scale"):
        body = f'{{"type": "txt2img", "params": {{"prompt": "x", "{name}": NaN}}}}'.encode()
        cases.append((f"v2:{name}=NaN", JOBS, body, f"params.{name}"))
    cases += [
        ("override_settings NaN", T2I, raw(t2i(), override_settings='{"eta_ddim": NaN}'), "override_settings"),
        ("script_args NaN", T2I, raw(t2i(), script_args="[NaN]"), "script_args"),
        ("comments Infinity", T2I, raw(t2i(), comments='{"a": Infinity}'), "comments"),
        ("alwayson NaN", T2I, raw(t2i(), alwayson_scripts='{"controlnet": {"args": [{"weight": NaN}]}}'),
         "alwayson_scripts"),
        ("options NaN", "/sdapi/v1/options", b'{"eta_ddim": NaN}', "eta_ddim"),
        ("options unknown NaN", "/sdapi/v1/options", b'{"my_extension_option": Infinity}', "my_extension_option"),
        ("options huge int", "/sdapi/v1/options", {"jpeg_quality": HUGE}, "jpeg_quality"),
        ("internal progress huge", "/internal/progress", {"id_task": "x", "id_live_preview": HUGE},
         "id_live_preview"),
    ]
    # Integers beyond their ranges (A1111's -1 random seed stays valid: see test_valid_edges_are_accepted).
    ints = {
        T2I: (t2i(), ["seed", "subseed", "steps", "batch_size", "n_iter", "width", "height", "clip_skip",
                      "seed_resize_from_h", "seed_resize_from_w", "hr_second_pass_steps", "hr_resize_x",
                      "firstphase_width"]),
        I2I: (i2i(), ["mask_blur", "mask_blur_x", "inpaint_full_res_padding", "seed"]),
        EXTRAS: ({"image": SMALL}, ["upscaling_resize_w", "upscaling_resize_h"]),
        DETECT: ({"controlnet_input_images": [SKETCH]}, ["controlnet_processor_res"]),
    }
    for path, (base, names) in ints.items():
        for name in names:
            for value in (HUGE, -HUGE):
                cases.append((f"{path}:{name}={'-' if value < 0 else ''}2**70", path, {**base, name: value}, name))
    cases += [
        ("seed -2", T2I, t2i(seed=-2), "seed"),
        ("seed 2**32", T2I, t2i(seed=2**32), "seed"),
        ("subseed 2**63", T2I, t2i(subseed=2**63), "subseed"),
        ("detect res 2**62", DETECT, {"controlnet_input_images": [SKETCH], "controlnet_processor_res": 2**62},
         "controlnet_processor_res"),
        ("sampler_index huge", T2I, t2i(sampler_index=HUGE), "sampler_index"),
    ]
    # Lone surrogates in strings (values and keys).
    for name in ("prompt", "negative_prompt", "sampler_name", "hr_prompt", "script_name", "scheduler"):
        cases.append((f"surrogate {name}", T2I, raw(t2i(), **{name: '"a\\ud800b"'}), name))
    cases += [
        ("surrogate styles", T2I, raw(t2i(), styles='["\\udfff"]'), "styles"),
        ("surrogate override key", T2I, raw(t2i(), override_settings='{"\\ud800": 1}'), "override_settings"),
        ("surrogate v2", JOBS, b'{"type": "txt2img", "params": {"prompt": "\\ud800"}}', "params.prompt"),
        ("surrogate png-info", "/sdapi/v1/png-info", b'{"image": "\\ud800"}', "image"),
        ("surrogate detect module", DETECT, b'{"controlnet_module": "\\ud800"}', "controlnet_module"),
    ]
    # Malformed v2 envelopes.
    cases += [
        ("v2 params list", JOBS, {"type": "txt2img", "params": [1, 2]}, "params"),
        ("v2 params string", JOBS, {"type": "txt2img", "params": "steps=5"}, "params"),
        ("v2 params null", JOBS, {"type": "txt2img", "params": None}, "params"),
        ("v2 type number", JOBS, {"type": 5, "params": {}}, "type"),
        ("v2 type list", JOBS, {"type": ["txt2img"], "params": {}}, "type"),
        ("v2 type unknown", JOBS, {"type": "upscale", "params": {}}, "type"),
        ("v2 body list", JOBS, [1, 2], "body"),
        ("v2 img2img no init", JOBS, {"type": "img2img", "params": {"prompt": "x"}}, "params.init_images"),
        ("v2 params steps", JOBS, {"type": "txt2img", "params": {"steps": "many"}}, "params.steps"),
    ]
    # img2img inputs.
    cases += [
        ("img2img no init_images", I2I, {"prompt": "x"}, "init_images"),
        ("img2img empty init_images", I2I, {"prompt": "x", "init_images": []}, "init_images"),
        ("img2img init not base64", I2I, i2i(init_images=["not base64!!"]), "init_images[0]"),
        ("img2img init not image", I2I, i2i(init_images=[b64(b"hello world")]), "init_images[0]"),
        ("img2img init 144 Mpx", I2I, i2i(init_images=[HEADER_12K]), "init_images[0]"),
        ("img2img init 81 Mpx", I2I, i2i(init_images=[HEADER_9K]), "init_images[0]"),
        ("img2img mask garbage", I2I, i2i(mask="garbage"), "mask"),
        ("img2img resize_mode 7", I2I, i2i(resize_mode=7), "resize_mode"),
        ("img2img inpainting_fill -1", I2I, i2i(inpainting_fill=-1), "inpainting_fill"),
    ]
    # Resource limits of generation.
    cases += [
        ("steps 100000", T2I, t2i(steps=100000), "steps"),
        ("images per job", T2I, t2i(n_iter=1000, batch_size=64), "n_iter"),
        ("hires 8x of 4096", T2I, t2i(width=4096, height=4096, enable_hr=True, hr_scale=8), "hr_scale"),
        ("hires resize huge", T2I, t2i(enable_hr=True, hr_resize_x=4096, width=8, height=4096), "hr_resize_x"),
        ("width not multiple of 8", T2I, t2i(width=100), "width"),
        ("prompt too long", T2I, t2i(prompt="a" * 70000), "prompt"),
    ]
    # Extras: pixel caps on input and output, checked from the headers before any decoding.
    cases += [
        ("extras 81 Mpx input", EXTRAS, {"image": HEADER_9K, "upscaler_1": "Lanczos"}, "image"),
        ("extras x8 of 4000", EXTRAS, {"image": HEADER_4K, "upscaler_1": "Lanczos", "upscaling_resize": 8},
         "upscaling_resize"),
        ("extras resize to 8192x8192 from a strip", EXTRAS,
         {"image": png_b64(Image.new("RGB", (8, 16))), "upscaler_1": "Lanczos", "resize_mode": 1,
          "upscaling_resize_w": 8192, "upscaling_resize_h": 8192}, "upscaling_resize_w"),
        ("extras scale 1e6", EXTRAS, {"image": SMALL, "upscaling_resize": 1e6}, "upscaling_resize"),
        ("extras batch garbage", "/sdapi/v1/extra-batch-images",
         {"imageList": [{"data": "garbage", "name": "a"}], "upscaler_1": "Lanczos"}, "imageList[0].data"),
        ("extras batch 81 Mpx", "/sdapi/v1/extra-batch-images",
         {"imageList": [{"data": HEADER_9K, "name": "a"}], "upscaler_1": "Lanczos"}, "imageList[0].data"),
    ]
    # ControlNet detect.
    cases += [
        ("detect res 16000", DETECT, {"controlnet_input_images": [SKETCH], "controlnet_module": "canny",
                                      "controlnet_processor_res": 16000}, "controlnet_processor_res"),
        ("detect res -5", DETECT, {"controlnet_input_images": [SKETCH], "controlnet_processor_res": -5},
         "controlnet_processor_res"),
        ("detect strip", DETECT, {"controlnet_input_images": [STRIP], "controlnet_module": "canny",
                                  "controlnet_processor_res": 2048}, "controlnet_processor_res"),
        ("detect 144 Mpx", DETECT, {"controlnet_input_images": [HEADER_12K], "controlnet_module": "canny"},
         "controlnet_input_images[0]"),
        ("detect garbage", DETECT, {"controlnet_input_images": ["garbage"], "controlnet_module": "canny"},
         "controlnet_input_images[0]"),
        ("detect unknown module", DETECT, {"controlnet_input_images": [SKETCH], "controlnet_module": "nope"},
         "controlnet_module"),
        ("detect threshold 1e9", DETECT, {"controlnet_input_images": [SKETCH], "controlnet_threshold_a": 1e9},
         "controlnet_threshold_a"),
    ]
    # png-info and query parameters.
    cases += [
        ("png-info garbage", "/sdapi/v1/png-info", {"image": "garbage!"}, "image"),
        ("png-info not image", "/sdapi/v1/png-info", {"image": b64(b"GIF89a-not-really")}, "image"),
        ("jobs limit huge", f"GET {JOBS}?limit={HUGE}", None, "limit"),
        ("jobs offset negative", f"GET {JOBS}?offset=-1", None, "offset"),
        ("jobs status unknown", f"GET {JOBS}?status=exploded", None, "status"),
    ]
    cases += _script_cases()
    return cases


def _xyz(*args: Any) -> dict[str, Any]:
    return t2i(script_name="x/y/z plot", script_args=list(args))


def _script_cases() -> list[Case]:
    xyz = [
        ("xyz unknown axis", _xyz("Nope", "1,2"), "script_args[0]"),
        ("xyz axis index 99", _xyz(99, "1,2"), "script_args[0]"),
        ("xyz steps not numbers", _xyz("Steps", "a,b"), "script_args[1]"),
        ("xyz steps huge range", _xyz("Steps", "1-999999999"), "script_args[1]"),
        ("xyz steps over limit", _xyz("Steps", "1,100000"), "script_args[1]"),
        ("xyz steps zero", _xyz("Steps", "0,1"), "script_args[1]"),
        ("xyz prompt S/R missing", _xyz("Prompt S/R", "zebra,lion"), "script_args[1]"),
        ("xyz cfg NaN text", _xyz("CFG Scale", "nan"), "script_args[1]"),
        ("xyz cfg 1e400", _xyz("CFG Scale", "1e400"), "script_args[1]"),
        ("xyz float step 0", _xyz("CFG Scale", "1-5 (+0)"), "script_args[1]"),
        ("xyz float tiny step", _xyz("CFG Scale", "0-1 (+0.0000001)"), "script_args[1]"),
        ("xyz seed huge", _xyz("Seed", "99999999999999999999"), "script_args[1]"),
        ("xyz size huge", _xyz("Size", "100000x100000"), "script_args[1]"),
        ("xyz y axis unknown", _xyz("Steps", "1,2", None, "Nope", "1"), "script_args[3]"),
        ("xyz z values bad", _xyz("Steps", "1,2", None, "Nothing", "", None, "Steps", "x"), "script_args[7]"),
        ("xyz too many cells", _xyz("Seed", "1-100", None, "Var. seed", "1-100"), "script_args"),
        ("xyz dropdown not list", _xyz("Steps", "1", 5), "script_args[2]"),
        ("xyz legend dict", _xyz("Steps", "1", None, 0, "", None, 0, "", None, {"a": 1}), "script_args[9]"),
        ("xyz margin negative", _xyz("Steps", "1", *([None] * 14), -5), "script_args[16]"),
        ("xyz margin text", _xyz("Steps", "1", *([None] * 14), "wide"), "script_args[16]"),
        ("xyz all null", _xyz(*([None] * 19)), "script_args[1]"),
        ("xyz values not text", _xyz("Steps", {"a": 1}), "script_args[1]"),
    ]
    matrix = [
        ("matrix prompt_type", t2i(script_name="prompt matrix", script_args=[False, False, "sideways"]),
         "script_args[2]"),
        ("matrix delimiter", t2i(script_name="prompt matrix", script_args=[False, False, "positive", 5]),
         "script_args[3]"),
        ("matrix margin 1e9", t2i(script_name="prompt matrix", script_args=[False, False, "positive", "comma",
                                                                           10**9]), "script_args[4]"),
        ("matrix 20 parts", t2i(prompt="a" + "|b" * 20, script_name="prompt matrix", script_args=[]), "prompt"),
        ("matrix put_at_start list", t2i(script_name="prompt matrix", script_args=[[1]]), "script_args[0]"),
    ]
    pff = [
        ("pff prompt_txt number", [False, False, "start", 5], "script_args[3]"),
        ("pff position", [False, False, "middle", "a"], "script_args[2]"),
        ("pff steps text", [False, False, "start", "--steps abc"], "--steps"),
        ("pff unknown option", [False, False, "start", "--unknown 1"], "script_args[3]"),
        ("pff steps huge", [False, False, "start", "a cat\n--steps 100000"], "script_args[3]"),
        ("pff cfg nan", [False, False, "start", "--cfg_scale nan"], "script_args[3]"),
        ("pff seed huge", [False, False, "start", "--seed 99999999999999999999999"], "script_args[3]"),
        ("pff width odd", [False, False, "start", "--width 100"], "script_args[3]"),
        ("pff too many images", [False, False, "start", "--n_iter 600\n--n_iter 600"], "script_args[3]"),
        ("pff bad quote", [False, False, "start", '--prompt "unclosed'], "script_args[3]"),
    ]
    up = [
        ("sd upscale scale 1e6", ["", 64, "Lanczos", 1e6], "script_args[3]"),
        ("sd upscale scale text", ["", 64, "Lanczos", "big"], "script_args[3]"),
        ("sd upscale scale NaN", ["", 64, "Lanczos", math.nan], "script_args[3]"),
        ("sd upscale overlap -1", ["", -1, "Lanczos", 2], "script_args[1]"),
        ("sd upscale overlap >= tile", ["", 64, "Lanczos", 2], "script_args[1]"),
        ("sd upscale unknown upscaler", ["", 16, "Nope", 2], "script_args[2]"),
        ("sd upscale upscaler 99", ["", 16, 99, 2], "script_args[2]"),
        ("sd upscale upscaler list", ["", 16, [1], 2], "script_args[2]"),
    ]
    loop = [
        ("loopback 1e6 loops", [1_000_000, 0.5, "Linear", "None"], "script_args[0]"),
        ("loopback 5000 loops", [5000, 0.5, "Linear", "None"], "script_args[0]"),
        ("loopback loops text", ["many", 0.5, "Linear", "None"], "script_args[0]"),
        ("loopback strength 5", [4, 5, "Linear", "None"], "script_args[1]"),
        ("loopback curve", [4, 0.5, "Sharp", "None"], "script_args[2]"),
        ("loopback interrogate", [4, 0.5, "Linear", "CLIP"], "script_args[3]"),
    ]
    mk2 = [
        ("mk2 pixels 100000", ["", 100000, 8, ["left"], 1.0, 0.05], "script_args[1]"),
        ("mk2 direction north", ["", 64, 8, ["north"], 1.0, 0.05], "script_args[3]"),
        ("mk2 direction empty", ["", 64, 8, [], 1.0, 0.05], "script_args[3]"),
        ("mk2 noise_q huge", ["", 64, 8, ["left"], 1e9, 0.05], "script_args[4]"),
        ("mk2 color variation 2", ["", 64, 8, ["left"], 1.0, 2], "script_args[5]"),
        ("mk2 mask_blur text", ["", 64, "soft", ["left"], 1.0, 0.05], "script_args[2]"),
    ]
    poor = [
        ("poor pixels 100000", [100000, 4, "fill", ["left"]], "script_args[0]"),
        ("poor mask_blur -1", [64, -1, "fill", ["left"]], "script_args[1]"),
        ("poor fill 9", [64, 4, 9, ["left"]], "script_args[2]"),
        ("poor fill name", [64, 4, "paint", ["left"]], "script_args[2]"),
        ("poor direction string", [64, 4, "fill", 5], "script_args[3]"),
    ]
    unit = {"module": "canny", "model": "None", "image": SKETCH}
    cn = [
        ("controlnet weight 5", [{**unit, "weight": 5}], "alwayson_scripts.controlnet.args[0]"),
        ("controlnet res 16000", [{**unit, "processor_res": 16000}], "alwayson_scripts.controlnet.args[0]"),
        ("controlnet res 2**62", [{**unit, "processor_res": 2**62}], "alwayson_scripts.controlnet.args[0]"),
        ("controlnet unit number", [5], "alwayson_scripts.controlnet.args[0]"),
        ("controlnet second unit", [None, {**unit, "guidance_start": 2}], "alwayson_scripts.controlnet.args[1]"),
    ]
    cases: list[Case] = [(name, T2I, body, field) for name, body, field in xyz + matrix]
    cases += [(name, T2I, t2i(script_name="prompts from file or textbox", script_args=args), field)
              for name, args, field in pff]
    cases += [(name, I2I, i2i(script_name="sd upscale", script_args=args), field) for name, args, field in up]
    cases += [(name, I2I, i2i(script_name="loopback", script_args=args), field) for name, args, field in loop]
    cases += [(name, I2I, i2i(script_name="outpainting mk2", script_args=args), field) for name, args, field in mk2]
    cases += [(name, I2I, i2i(script_name="poor man's outpainting", script_args=args), field)
              for name, args, field in poor]
    cases += [(name, T2I, t2i(alwayson_scripts={"controlnet": {"args": args}}), field) for name, args, field in cn]
    cases.append(("sd upscale 16x of 1024", I2I, i2i(init_images=[png_b64(Image.new("RGB", (1024, 1024)))],
                                                     script_name="sd upscale", script_args=["", 16, "Lanczos", 16]),
                  "script_args[3]"))
    return cases


CASES = _cases()


def _send(http: Any, path: str, body: Any) -> Any:
    if path.startswith("GET "):
        return http.get(path[4:])
    if isinstance(body, bytes):
        return http.post(path, content=body, headers={"content-type": "application/json"})
    return http.post(path, content=json.dumps(body).encode(), headers={"content-type": "application/json"})


def _names_field(answer: dict[str, Any], field: str) -> bool:
    locs = [".".join(str(part) for part in error.get("loc", []) if part != "body") for error in answer["errors"]]
    return field in answer["detail"] or any(field in loc for loc in locs)


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 150
    assert len({case[0] for case in CASES}) == len(CASES)


def test_every_bad_request_is_a_4xx_naming_the_field(easel: Any, client: Any, api: Any) -> None:
    """One pass over the corpus (one test, so the failures are listed together): 4xx, valid JSON, the field named,
    no job queued; records the 5xx count and the server's peak RSS over the corpus."""
    jobs_before = client.get(JOBS, params={"limit": 1000}).json()["count"]
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    failures, server_errors = [], 0
    started = time.monotonic()
    for name, path, body, field in CASES:
        response = _send(client, path, body)
        if response.status_code >= 500:
            server_errors += 1
        try:
            answer = json.loads(response.content.decode("utf-8"))  # strict: no NaN, valid UTF-8
        except ValueError as exc:
            failures.append(f"{name}: {response.status_code}, body is not valid JSON ({exc})")
            continue
        if not 400 <= response.status_code < 500:
            failures.append(f"{name}: {response.status_code} {str(answer)[:200]}")
        elif not _names_field(answer, field):
            failures.append(f"{name}: {response.status_code} does not name {field!r}: {answer['detail'][:200]}")
    elapsed = time.monotonic() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nbad-input corpus: {len(CASES)} cases, {server_errors} x 5xx, {elapsed:.1f} s, "
          f"peak RSS {peak_mib:.0f} MiB (before: {peak_before / 1024:.0f} MiB)")
    assert not failures, "\n".join(failures)
    assert server_errors == 0
    assert client.get(JOBS, params={"limit": 1000}).json()["count"] == jobs_before, "a bad request queued a job"
    # Nothing in the corpus may need more than a few hundred MiB (a decoded 144 Mpx image alone is 430 MiB).
    assert peak_mib - peak_before / 1024 < 400


@pytest.mark.parametrize("body", [
    t2i(seed=-1, subseed=-1), t2i(seed=2**32 - 1), t2i(seed=0), t2i(eta=0.5, s_noise=1.0, s_churn=0.0),
    t2i(script_name="x/y/z plot", script_args=["Steps", "1,2"]),
    t2i(prompt="a red circle|blue", script_name="prompt matrix", script_args=[]),
])
def test_valid_edges_are_accepted(client: Any, api: Any, body: dict[str, Any]) -> None:
    """The layer refuses only what is wrong: A1111's -1 random seed, the last seed, finite floats and good
    script arguments still make a job."""
    response = client.post(JOBS, json={"type": "txt2img", "params": {**body, "steps": 1}})
    assert response.status_code == 202, response.text
    api.wait_status(client, response.json()["id"], {"succeeded"}, timeout=120)


def test_png_info_reads_text_without_decoding(client: Any) -> None:
    """A 144 Mpx PNG whose pixel data is missing: decoding it would fail (or need 430 MiB); png-info reads the
    text chunk from the header at once."""
    data = b64(png_header(12000, 12000, "a cat\nSteps: 7, Sampler: Euler, Seed: 3, Size: 12000x12000"))
    started = time.monotonic()
    response = client.post("/sdapi/v1/png-info", json={"image": data})
    assert response.status_code == 200, response.text
    assert response.json()["parameters"]["Steps"] == 7
    assert time.monotonic() - started < 5


def test_runtime_script_error_is_422_naming_the_argument(client: Any, easel: Any) -> None:
    """Prompt S/R whose text is absent is refused before queueing; the same check fires at run time (a job
    queued through the UI's path, which skips the API's checks) as a 422 naming the argument, not a 500."""
    response = client.post(T2I, json=_xyz("Prompt S/R", "zebra,lion"))
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["script_args[1] (x_values)"]
    payload = {**_xyz("Prompt S/R", "zebra,lion"), "width": 64, "height": 64}
    from modules.processing.params import Txt2ImgParams

    job = easel.services.queue.submit("txt2img", Txt2ImgParams.model_validate(payload).model_dump(mode="json"),
                                      source="test")
    final = easel.services.queue.wait(job.id, timeout=120)
    assert final.status.value == "failed"
    view = client.get(f"{JOBS}/{job.id}").json()
    assert view["error_status"] == 422 and view["error_field"] == "script_args[1] (x_values)", view
