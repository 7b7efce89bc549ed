"""Image storage: metadata in real files, A1111 layout, atomic numbered saves, safe serving, grids, base64."""

from __future__ import annotations

import base64
import io
import json
import os
import threading
from datetime import datetime
from pathlib import Path

import piexif
import pytest
from PIL import Image, PngImagePlugin

from modules.core.errors import NotFoundError, PermissionDeniedError, UserInputError
from modules.processing.filenames import sanitize_filename_part
from modules.processing.grids import draw_grid_annotations, image_grid, labelled_grid
from modules.processing.image_codec import decode_base64_image, encode_base64
from modules.processing.image_metadata import embed_infotext, read_infotext
from modules.processing.image_store import ImageStore, write_new_file
from modules.processing.infotext import build_infotext, parse_infotext

INFOTEXT = build_infotext(
    "a red fox, (snow:1.2)\nforest: winter",
    "blurry, lowres",
    {
        "Steps": 20,
        "Sampler": "Euler a",
        "CFG scale": 7,
        "Seed": 123,
        "Size": "64x48",
        "Lora hashes": "fox: abc, snow: def",
        "Version": "easel",
    },
)
FIXED_NOW = datetime(2026, 11, 21, 13, 14, 15)


def make_image(color: tuple[int, int, int] = (200, 30, 40), size: tuple[int, int] = (64, 48)) -> Image.Image:
    return Image.new("RGB", size, color)


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "outputs", clock=lambda: FIXED_NOW)


# ------------------------------------------------------------------------------------------- metadata in files


@pytest.mark.parametrize("fmt", ["png", "jpg", "jpeg", "webp"])
def test_infotext_survives_a_file_on_disk(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"image.{fmt}"
    path.write_bytes(embed_infotext(make_image(), INFOTEXT, fmt, quality=90))
    with Image.open(path) as im:
        assert im.size == (64, 48)
        text, _ = read_infotext(im)
    assert text == INFOTEXT
    assert read_infotext(path.read_bytes())[0] == INFOTEXT
    parsed = parse_infotext(text)
    assert parsed["Lora hashes"] == "fox: abc, snow: def"


def test_png_uses_parameters_text_chunk_and_keeps_other_text() -> None:
    image = make_image()
    image.info["Title"] = "kept"
    image.info["parameters"] = "old parameters"
    data = embed_infotext(image, INFOTEXT, "png")
    assert b"tEXtparameters\x00" in data
    with Image.open(io.BytesIO(data)) as im:
        assert im.info["parameters"] == INFOTEXT
        assert im.info["Title"] == "kept"
    text, others = read_infotext(data)
    assert text == INFOTEXT and others["Title"] == "kept"


def test_png_non_latin_text_round_trips() -> None:
    text = build_infotext("猫、かわいい", "", {"Steps": 1, "Sampler": "Euler", "Seed": 1})
    assert read_infotext(embed_infotext(make_image(), text, "png"))[0] == text


def test_jpeg_uses_exif_user_comment_unicode() -> None:
    data = embed_infotext(make_image(), INFOTEXT, "jpg")
    with Image.open(io.BytesIO(data)) as im:
        exif = piexif.load(im.info["exif"])
    raw = exif["Exif"][piexif.ExifIFD.UserComment]
    assert raw.startswith(b"UNICODE\x00")


def test_jpeg_converts_rgba_and_quality_changes_size() -> None:
    rgba = Image.new("RGBA", (64, 64), (10, 20, 30, 128))
    assert Image.open(io.BytesIO(embed_infotext(rgba, "x", "jpeg"))).mode == "RGB"
    noisy = Image.effect_noise((128, 128), 64).convert("RGB")
    assert len(embed_infotext(noisy, None, "jpg", quality=20)) < len(embed_infotext(noisy, None, "jpg", quality=95))


def test_gif_comment_is_read() -> None:
    buffer = io.BytesIO()
    make_image().save(buffer, format="GIF", comment=INFOTEXT.encode())
    assert read_infotext(buffer.getvalue())[0] == INFOTEXT
    assert read_infotext(embed_infotext(make_image(), INFOTEXT, "gif"))[0] == INFOTEXT


def test_novelai_png_is_converted_to_a1111_infotext() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "NovelAI")
    info.add_text("Description", "1girl, {{masterpiece}}, solo")
    comment = {"steps": 28, "sampler": "k_euler_ancestral", "seed": 77, "scale": 11, "uc": "lowres, bad hands"}
    info.add_text("Comment", json.dumps(comment))
    buffer = io.BytesIO()
    make_image(size=(512, 768)).save(buffer, format="PNG", pnginfo=info)
    text, others = read_infotext(buffer.getvalue())
    assert text is not None
    parsed = parse_infotext(text)
    assert parsed["Prompt"] == "1girl, {{masterpiece}}, solo"
    assert parsed["Negative prompt"] == "lowres, bad hands"
    assert (parsed["Steps"], parsed["Sampler"], parsed["CFG scale"], parsed["Seed"]) == (28, "Euler a", 11, 77)
    assert (parsed["Size-1"], parsed["Size-2"]) == (512, 768)
    assert others["Software"] == "NovelAI"


def test_image_without_metadata_and_garbage_bytes() -> None:
    assert read_infotext(embed_infotext(make_image(), None, "png"))[0] is None
    with pytest.raises(UserInputError) as err:
        read_infotext(b"not an image")
    assert err.value.field == "image"


# ------------------------------------------------------------------------------------------- saving


def test_save_uses_a1111_layout_and_counter(store: ImageStore) -> None:
    first = store.save(make_image(), kind="txt2img", seed=123, prompt="a red fox", infotext=INFOTEXT)
    second = store.save(make_image(), kind="txt2img", seed=124, prompt="a red fox", infotext=INFOTEXT)
    assert first == store.root / "txt2img-images" / "2026-11-21" / "00000-123-a red fox.png"
    assert second.name == "00001-124-a red fox.png"
    assert read_infotext(first.read_bytes())[0] == INFOTEXT
    grid = store.save(make_image(), kind="txt2img-grids", seed=123, prompt="a red fox")
    assert grid == store.root / "txt2img-grids" / "2026-11-21" / "grid-0000.png"


def test_counter_continues_after_existing_files(store: ImageStore) -> None:
    folder = store.root / "img2img-images" / "2026-11-21"
    folder.mkdir(parents=True)
    (folder / "00041-9-old.png").write_bytes(b"x")
    (folder / "notes.txt").write_bytes(b"x")
    path = store.save(make_image(), kind="img2img", seed=5, prompt="p")
    assert path.name == "00042-5-p.png"


def test_save_formats_quality_and_options(tmp_path: Path) -> None:
    options = {"samples_format": "jpg", "jpeg_quality": 50, "save_to_dirs": False, "samples_filename_pattern": "[seed]"}
    store = ImageStore(tmp_path / "out", lambda: options, clock=lambda: FIXED_NOW)
    path = store.save(make_image(), kind="txt2img", seed=7, prompt="x", infotext=INFOTEXT)
    assert path == store.root / "txt2img-images" / "00000-7.jpg"
    assert read_infotext(path.read_bytes())[0] == INFOTEXT
    webp = store.save(make_image(), kind="extras", seed=1, prompt="x", infotext=INFOTEXT, fmt="webp")
    assert webp.suffix == ".webp" and read_infotext(webp.read_bytes())[0] == INFOTEXT
    options["enable_pnginfo"] = False
    bare = store.save(make_image(), kind="txt2img", seed=8, prompt="x", infotext=INFOTEXT, fmt="png")
    assert read_infotext(bare.read_bytes())[0] is None


def test_filename_tags(store: ImageStore) -> None:
    extra = {
        "steps": 20,
        "cfg": 7.5,
        "sampler": "DPM++ 2M",
        "scheduler": "Karras",
        "model_name": "sd15",
        "model_hash": "abcdef1234",
        "batch_number": 2,
        "all_seeds": [5, 6, 7],
    }
    pattern = "[seed]-[seed_last]-[steps]-[cfg]-[width]x[height]-[sampler]-[model_name]-[model_hash]-[batch_number]"
    path = store.save(make_image(), kind="txt2img", seed=5, prompt="p", filename_pattern=pattern, extra=extra)
    assert path.name == "00000-5-7-20-7.5-64x48-DPM++ 2M-sd15-abcdef1234-2.png"
    words = store.save(
        make_image(),
        kind="txt2img",
        seed=1,
        prompt="a (red:1.2) fox, in the snow, at night, very detailed, 8k photo",
        filename_pattern="[prompt_words]_[prompt]_[date]_[datetime<%H%M>]_[unknown]_[none]",
        dir_pattern="[datetime<%Y>]/[sampler]",
        extra=extra,
    )
    assert words.parent == store.root / "txt2img-images" / "2026" / "DPM++ 2M"
    assert words.name.startswith("00000-a red 1.2 fox in the snow at_a_(red_1.2)_fox,_in_the_snow")
    assert words.name.endswith("_2026-11-21_1314_[unknown]_.png")


def test_filenames_are_sanitised(store: ImageStore) -> None:
    nasty = '../../etc/passwd <script>: "quoted" | pipe? star*\\back\nnewline  ..'
    path = store.save(make_image(), kind="txt2img", seed=3, prompt=nasty, dir_pattern="[prompt_spaces]/../[seed]")
    assert path.resolve().is_relative_to(store.root / "txt2img-images")
    name = path.name
    assert not any(ch in name for ch in '<>:"/\\|?*\n')
    assert path.parent.parent.parent == store.root / "txt2img-images"
    long = store.save(make_image(), kind="txt2img", seed=1, prompt="word " * 200)
    assert len(long.name.encode()) <= 220
    wide = store.save(make_image(), kind="txt2img", seed=1, prompt="猫" * 300)
    assert len(wide.name.encode()) <= 220
    assert sanitize_filename_part(" .. ", replace_spaces=False) == ""
    assert sanitize_filename_part("..") == ""
    assert sanitize_filename_part("con", replace_spaces=False) == "con"
    reserved = store.save(make_image(), kind="txt2img", seed=1, prompt="p", dir_pattern="CON")
    assert reserved.parent.name == "CON_"


def test_unknown_kind_and_format_are_user_errors(store: ImageStore) -> None:
    with pytest.raises(UserInputError) as err:
        store.save(make_image(), kind="video", seed=1, prompt="p")
    assert err.value.field == "kind"
    with pytest.raises(UserInputError) as err:
        store.save(make_image(), kind="txt2img", seed=1, prompt="p", fmt="bmp")
    assert err.value.field == "format"


def test_save_is_atomic_and_leaves_no_temp_files(store: ImageStore, monkeypatch: pytest.MonkeyPatch) -> None:
    path = store.save(make_image(), kind="txt2img", seed=1, prompt="p")
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "link", crash)
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk on fire"):
        store.save(make_image(), kind="txt2img", seed=2, prompt="p")
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_concurrent_saves_get_distinct_counters(store: ImageStore) -> None:
    paths: list[Path] = []
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            for i in range(10):
                paths.append(store.save(make_image(), kind="txt2img", seed=seed + i, prompt="same"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(base,)) for base in (0, 100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(int(p.name[:5]) for p in paths) == list(range(20))
    folder = paths[0].parent
    assert len(list(folder.iterdir())) == 20
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_second_store_continues_counter_and_never_overwrites(store: ImageStore, tmp_path: Path) -> None:
    first = store.save(make_image(), kind="txt2img", seed=1, prompt="same")
    other = ImageStore(store.root, clock=lambda: FIXED_NOW)
    second = other.save(make_image((0, 255, 0)), kind="txt2img", seed=1, prompt="same")
    assert (first.name, second.name) == ("00000-1-same.png", "00001-1-same.png")
    # A writer that raced to the same number (stale scan) takes the next free name instead of overwriting.
    path, number = write_new_file(first.parent, b"new", lambda n: f"{n:05d}-1-same.png", 0)
    assert (path.name, number) == ("00002-1-same.png", 2)
    assert Image.open(first).getpixel((0, 0)) == (200, 30, 40)


# ------------------------------------------------------------------------------------------- listing and serving


def test_list_outputs_by_kind_and_date(store: ImageStore) -> None:
    a = store.save(make_image(), kind="txt2img", seed=1, prompt="a", infotext=INFOTEXT)
    b = store.save(make_image(), kind="img2img", seed=2, prompt="b")
    flat = store.save(make_image(), kind="extras", seed=3, prompt="c", save_to_dirs=False)
    (a.parent / ".easel-stale.tmp").write_bytes(b"partial")
    os.utime(a, (1000, 1000))
    os.utime(flat, (1, 1))  # not in a [date] folder: its day comes from the modification time
    entries = store.list_outputs()
    assert {e.path for e in entries} == {a, b, flat}
    assert [e.path for e in entries] == [b, a, flat]  # newest first
    txt = store.list_outputs(kind="txt2img")
    assert [e.relative for e in txt] == ["txt2img-images/2026-11-21/00000-1-a.png"]
    assert txt[0].infotext == INFOTEXT and txt[0].date == "2026-11-21" and txt[0].kind == "txt2img"
    assert [e.path for e in store.list_outputs(date="2026-11-21")] == [b, a]
    assert store.list_outputs(kind="img2img", date="1999-01-01") == []


def test_resolve_output_path_refuses_escapes(store: ImageStore, tmp_path: Path) -> None:
    saved = store.save(make_image(), kind="txt2img", seed=1, prompt="a")
    relative = saved.relative_to(store.root).as_posix()
    assert store.resolve_output_path(relative, must_exist=True) == saved
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.png").write_bytes(b"x")
    (store.root / "escape").symlink_to(secret)
    for bad in (
        "../secret/key.png",
        "txt2img-images/../../secret/key.png",
        str(secret / "key.png"),
        "/etc/passwd",
        "C:\\Windows\\win.ini",
        "escape/key.png",
        "a\x00b",
        "",
    ):
        with pytest.raises(PermissionDeniedError):
            store.resolve_output_path(bad)
    with pytest.raises(NotFoundError):
        store.resolve_output_path("txt2img-images/missing.png", must_exist=True)


# ------------------------------------------------------------------------------------------- grids


@pytest.mark.parametrize(
    ("count", "shape"), [(1, (1, 1)), (2, (2, 1)), (4, (2, 2)), (6, (3, 2)), (7, (7, 1)), (8, (4, 2)), (9, (3, 3))]
)
def test_image_grid_sizes(count: int, shape: tuple[int, int]) -> None:
    images = [make_image((i * 20, 0, 0), (16, 8)) for i in range(count)]
    grid = image_grid(images)
    assert grid.size == (shape[0] * 16, shape[1] * 8)
    assert grid.getpixel((0, 0)) == (0, 0, 0)
    last = count - 1
    assert grid.getpixel(((last % shape[0]) * 16 + 1, (last // shape[0]) * 8 + 1)) == (last * 20, 0, 0)


def test_image_grid_explicit_rows_and_margin() -> None:
    images = [make_image(size=(10, 10)) for _ in range(5)]
    assert image_grid(images, rows=2).size == (30, 20)
    assert image_grid(images, rows=1, margin=2).size == (58, 10)
    with pytest.raises(ValueError):
        image_grid([])


def test_labelled_grid_adds_label_bands() -> None:
    images = [make_image((0, 0, 255), (64, 64)) for _ in range(6)]
    grid = labelled_grid(images, ["CFG: 5", "CFG: 7", "CFG: 9"], ["Steps: 10", ["Steps: 20", "second line"]])
    assert grid.width == 3 * 64 + 64 * 3 // 4
    assert grid.height > 2 * 64
    top_band = grid.crop((64 * 3 // 4, 0, grid.width, grid.height - 128))
    assert min(px[0] for _, px in top_band.getcolors(10000)) < 64  # some dark label text was drawn
    assert grid.getpixel((grid.width - 1, grid.height - 1)) == (0, 0, 255)
    plain = draw_grid_annotations(image_grid(images[:3], rows=1), 64, 64, ["a", "b", "c"], [])
    assert plain.width == 192 and plain.height > 64
    with pytest.raises(ValueError):
        labelled_grid(images, ["a"], ["b"])


# ------------------------------------------------------------------------------------------- base64


def test_base64_round_trip_with_infotext_and_data_url() -> None:
    image = make_image((1, 2, 3))
    encoded = encode_base64(image, "png", INFOTEXT)
    decoded = decode_base64_image(encoded)
    assert decoded.size == (64, 48) and decoded.getpixel((5, 5)) == (1, 2, 3)
    assert read_infotext(decoded)[0] == INFOTEXT
    url = decode_base64_image("data:image/png;base64," + encoded)
    assert url.getpixel((0, 0)) == (1, 2, 3)
    wrapped = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76)).rstrip("=")
    assert decode_base64_image(wrapped).size == (64, 48)
    jpeg = decode_base64_image(encode_base64(image, "jpg", INFOTEXT, quality=95))
    assert jpeg.format == "JPEG" and read_infotext(jpeg)[0] == INFOTEXT


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "!!!not base64!!!",
        base64.b64encode(b"plain text, not an image").decode(),
        "data:text/plain,hello",
        base64.b64encode(embed_infotext(make_image(), None, "png")[:60]).decode(),
    ],
)
def test_bad_base64_is_a_user_error_naming_the_field(bad: str) -> None:
    with pytest.raises(UserInputError) as err:
        decode_base64_image(bad, field="init_images")
    assert err.value.field == "init_images"
    assert err.value.status_code == 422


def test_jpeg_infotext_too_big_for_exif_is_left_out_not_fatal() -> None:
    huge = build_infotext("word " * 8000, "", {"Steps": 1, "Sampler": "Euler", "Seed": 1})
    data = embed_infotext(make_image(), huge, "jpg")
    assert Image.open(io.BytesIO(data)).size == (64, 48)
    assert read_infotext(data)[0] is None
    assert read_infotext(embed_infotext(make_image(), huge, "png"))[0] == huge


# ------------------------------------------------------------------------------------------- encoding once


def test_encoder_reuses_bytes_for_the_same_image_and_re_encodes_a_changed_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from modules.processing import image_metadata

    calls: list[str | None] = []
    real = image_metadata.embed_infotext

    def counting(image: Image.Image, infotext: str | None, fmt: str, quality: int = 80, **kw: bool) -> bytes:
        calls.append(infotext)
        return real(image, infotext, fmt, quality, **kw)

    monkeypatch.setattr(image_metadata, "embed_infotext", counting)
    encoder = image_metadata.ImageEncoder()
    image = make_image()
    first = encoder.encode(image, INFOTEXT, "png")
    assert encoder.encode(image, INFOTEXT, "png") == first and len(calls) == 1 and encoder.hits == 1
    # a different infotext, format or an equal-looking but distinct image is encoded afresh
    assert read_infotext(Image.open(io.BytesIO(encoder.encode(image, "other", "png"))))[0] == "other"
    encoder.encode(image, INFOTEXT, "jpg")
    encoder.encode(make_image(), INFOTEXT, "png")
    assert len(calls) == 4
    # a script that draws on the saved image before the result is written gets its drawing in the result
    image.putpixel((0, 0), (1, 2, 3))
    changed = Image.open(io.BytesIO(encoder.encode(image, INFOTEXT, "png")))
    assert changed.getpixel((0, 0)) == (1, 2, 3) and len(calls) == 5
    # what is kept goes with the images: an encoding of a freed image is dropped at the next one
    del image, changed
    import gc

    gc.collect()
    encoder.encode(make_image(), INFOTEXT, "png")
    assert len(encoder._entries) == 1


def test_store_and_result_share_one_encoding(store: ImageStore) -> None:
    image = make_image()
    path = store.save(image, kind="txt2img", seed=1, infotext=INFOTEXT)
    assert store.encoder.encode(image, INFOTEXT, "png") == path.read_bytes() and store.encoder.hits == 1
