"""Face restoration with a random-weight GFPGAN: only the cut around each face changes, visibility blends, pickle
files need --allow-pickle, and missing models are explained (extras note, txt2img warning)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from modules.core.errors import ModelLoadError, NotFoundError
from modules.core.paths import ModelPaths
from modules.faces.detection import FaceBox
from modules.faces.restorer import DEFAULT_MARGIN, RestoredImage, load_face_model, paste_mask
from modules.faces.service import FaceRestorerService
from modules.upscalers.models import ModelFile

FACE = FaceBox(40, 30, 90, 80)


class FixedBoxes:
    """A detector that always finds the given boxes (the Haar detector has its own tests)."""

    def __init__(self, *boxes: FaceBox) -> None:
        self.boxes = list(boxes)

    def detect(self, image: Image.Image) -> list[FaceBox]:
        return list(self.boxes)


def _picture(width: int = 160, height: int = 128, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def _outside(array: np.ndarray, cut: FaceBox) -> np.ndarray:
    keep = np.ones(array.shape[:2], dtype=bool)
    keep[cut.top:cut.bottom, cut.left:cut.right] = False
    return array[keep]


@pytest.fixture(scope="module")
def gfpgan(gfpgan_models_dir: Path) -> FaceRestorerService:
    return FaceRestorerService(ModelPaths(gfpgan_models_dir), detector=FixedBoxes(FACE))


@pytest.fixture(scope="module")
def restored(gfpgan: FaceRestorerService) -> RestoredImage:
    return gfpgan.get("GFPGAN").restore(_picture(), visibility=1.0)


@pytest.mark.slow
def test_only_the_cut_around_the_face_changes(restored: RestoredImage) -> None:
    original = np.asarray(_picture(), dtype=np.int16)
    result = np.asarray(restored.image, dtype=np.int16)
    assert restored.faces == [FACE]
    assert result.shape == original.shape
    cut = FACE.crop_square(DEFAULT_MARGIN, 160, 128)
    assert (cut.left, cut.top, cut.right, cut.bottom) == (20, 10, 110, 100)  # a 50 px face grown by 40% a side
    assert np.array_equal(_outside(result, cut), _outside(original, cut))
    face = (slice(FACE.top, FACE.bottom), slice(FACE.left, FACE.right))
    assert np.abs(result[face] - original[face]).mean() > 20


@pytest.mark.slow
def test_extras_blends_the_restored_face_by_visibility(gfpgan: FaceRestorerService, restored: RestoredImage,
                                                        tmp_path: Path) -> None:
    from modules.processing.extras import ExtrasService, parse_extras_payload

    extras = ExtrasService(settings=_settings(tmp_path), upscalers=None, face_restorers=gfpgan)
    params = parse_extras_payload({"gfpgan_visibility": 0.5})
    result = extras.process(params, images=[(_picture(), "")])
    half = np.asarray(result.images[0], dtype=np.float32)
    original = np.asarray(_picture(), dtype=np.float32)
    full = np.asarray(restored.image, dtype=np.float32)
    face = (slice(FACE.top, FACE.bottom), slice(FACE.left, FACE.right))  # where the paste mask is 1
    assert np.abs(half[face] - (original[face] + full[face]) / 2).max() <= 1.0
    cut = FACE.crop_square(DEFAULT_MARGIN, 160, 128)
    assert np.array_equal(_outside(half, cut), _outside(original, cut))
    assert result.html_info == "<p>GFPGAN visibility: 0.5</p>"
    assert result.notes == []


def _settings(data_dir: Path) -> object:
    """Default settings (and so the default resource limits) over a scratch data dir."""
    from modules.core.settings import Settings

    return Settings.load(["--data-dir", str(data_dir / "data")], {})


def test_visibility_zero_returns_the_original_without_loading(gfpgan_models_dir: Path) -> None:
    service = FaceRestorerService(ModelPaths(gfpgan_models_dir), detector=FixedBoxes(FACE))
    result = service.get("GFPGAN").restore(_picture(), visibility=0.0)
    assert np.array_equal(np.asarray(result.image), np.asarray(_picture()))
    assert service._loaded is None


def test_no_face_found_leaves_the_picture_and_says_so(gfpgan_models_dir: Path, tmp_path: Path) -> None:
    from modules.processing.extras import ExtrasService, parse_extras_payload

    service = FaceRestorerService(ModelPaths(gfpgan_models_dir), detector=FixedBoxes())
    extras = ExtrasService(settings=_settings(tmp_path), upscalers=None, face_restorers=service)
    result = extras.process(parse_extras_payload({"gfpgan_visibility": 1.0}), images=[(_picture(), "")])
    assert np.array_equal(np.asarray(result.images[0]), np.asarray(_picture()))
    assert result.notes == ["GFPGAN: no face found"]


def test_pickle_weights_need_allow_pickle(tmp_path: Path) -> None:
    (tmp_path / "GFPGAN").mkdir()
    torch.save({"toRGB.0.weight": torch.zeros(1)}, tmp_path / "GFPGAN" / "GFPGANv1.4.pth")
    service = FaceRestorerService(ModelPaths(tmp_path), detector=FixedBoxes(FACE))
    assert service.names() == [] and service.list() == []
    with pytest.raises(ModelLoadError, match="GFPGANv1.4.pth is a pickle file; start Easel with --allow-pickle"):
        service.get("GFPGAN")
    file = ModelFile("GFPGANv1.4", tmp_path / "GFPGAN" / "GFPGANv1.4.pth")
    with pytest.raises(ModelLoadError, match="--allow-pickle"):
        load_face_model(file, torch.device("cpu"), False, ("GFPGAN",))
    allowed = FaceRestorerService(ModelPaths(tmp_path), allow_pickle=True, detector=FixedBoxes(FACE))
    assert allowed.names() == ["GFPGAN"]


def test_a_non_face_model_in_the_face_folder_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from modules.upscalers.models import import_spandrel

    import_spandrel()
    from spandrel.architectures.ESRGAN import ESRGAN

    (tmp_path / "GFPGAN").mkdir()
    save_file(ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=2).state_dict(),
              str(tmp_path / "GFPGAN" / "2x-esrgan.safetensors"))
    service = FaceRestorerService(ModelPaths(tmp_path), detector=FixedBoxes(FACE))
    with pytest.raises(ModelLoadError, match="2x-esrgan.safetensors is not a face restoration model"):
        service.get("GFPGAN").restore(_picture(), visibility=1.0)


def test_missing_models_name_the_folder_and_the_extras_note_says_so(tmp_path: Path) -> None:
    from modules.processing.extras import ExtrasService, parse_extras_payload

    service = FaceRestorerService(ModelPaths(tmp_path), detector=FixedBoxes(FACE))
    with pytest.raises(NotFoundError, match=f"no CodeFormer model is installed .*{tmp_path / 'Codeformer'}"):
        service.get("CodeFormer")
    extras = ExtrasService(settings=_settings(tmp_path), upscalers=None, face_restorers=service)
    result = extras.process(parse_extras_payload({"gfpgan_visibility": 0.5, "codeformer_visibility": 1}),
                            images=[(_picture(), "")])
    assert np.array_equal(np.asarray(result.images[0]), np.asarray(_picture()))
    assert result.notes[0].startswith("GFPGAN face restoration skipped: no GFPGAN model is installed (put its")
    assert result.notes[1].startswith("CodeFormer face restoration skipped: no CodeFormer model is installed")


def test_codeformer_weights_load_as_codeformer(tmp_path: Path, single_thread_torch: object) -> None:
    pytest.importorskip("spandrel_extra_arches")
    from safetensors.torch import save_file

    from modules.upscalers.models import import_spandrel

    import_spandrel()
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

    (tmp_path / "Codeformer").mkdir()
    torch.manual_seed(0)  # small transformer; the VQ encoder/decoder have fixed sizes
    save_file(CodeFormer(dim_embd=64, n_layers=1, codebook_size=64).state_dict(),
              str(tmp_path / "Codeformer" / "codeformer.safetensors"))
    service = FaceRestorerService(ModelPaths(tmp_path), detector=FixedBoxes(FACE))
    assert service.list() == [{"name": "CodeFormer", "cmd_dir": str(tmp_path / "Codeformer")}]
    descriptor = service._model(service.get("CodeFormer").file, ("CodeFormer",))
    assert descriptor.architecture.id == "CodeFormer"
    with pytest.raises(ModelLoadError, match="is a CodeFormer model; this folder takes GFPGAN or RestoreFormer"):
        load_face_model(service.get("CodeFormer").file, torch.device("cpu"), False, ("GFPGAN", "RestoreFormer"))


def test_paste_mask_fades_only_towards_edges_inside_the_image() -> None:
    inner = paste_mask(FaceBox(20, 10, 120, 110), 200, 200)
    assert inner.shape == (100, 100)
    assert inner[50, 50] == 1.0 and inner[0, 50] < 0.1 and inner[50, 99] < 0.1
    at_corner = paste_mask(FaceBox(0, 0, 100, 100), 200, 200)
    assert at_corner[0, 0] == 1.0 and at_corner[99, 50] < 0.1


def test_crop_square_stays_inside_the_image() -> None:
    near_edge = FaceBox(0, 0, 40, 30).crop_square(0.5, 100, 60)
    assert (near_edge.left, near_edge.top, near_edge.width, near_edge.height) == (0, 0, 60, 60)
    too_big = FaceBox(10, 10, 90, 50).crop_square(0.5, 100, 60)
    assert too_big.width == too_big.height == 60 and too_big.top == 0 and 0 <= too_big.left <= 40


# -- txt2img/img2img ``restore_faces`` ---------------------------------------------------------------------------
def _txt2img(model: Any, face_restoration: Any, **fields: Any) -> Any:
    from modules.core.settings import Options
    from modules.processing.params import Txt2ImgParams
    from modules.processing.processor import Processor
    from modules.processing.run import ProcessingRun
    from modules.processing.samplers import build_default_registry

    options = Options(**fields.pop("options", {}))
    params = {"prompt": "a red circle", "steps": 2, "width": 128, "height": 128, "seed": 3, "sampler_name": "Euler",
              **fields}
    processor = Processor(samplers=build_default_registry(), model_provider=lambda run: model,
                          face_restoration=face_restoration)
    return processor.process(ProcessingRun(Txt2ImgParams(**params), options))


def test_restore_faces_in_txt2img_uses_the_restored_images(loaded: Any) -> None:
    def invert(run: Any, images: list[Image.Image]) -> tuple[list[Image.Image], list[str]]:
        run.extra_generation_params["Face restoration"] = "inverted"  # a stand-in restorer: cheap and visible
        return [Image.fromarray(255 - np.asarray(image)) for image in images], []

    plain = _txt2img(loaded, invert)
    faces = _txt2img(loaded, invert, restore_faces=True)
    assert np.array_equal(np.asarray(faces.images[0]), 255 - np.asarray(plain.images[0]))
    assert "Face restoration: inverted, Size: 128x128" in faces.infotexts[0]  # A1111's key order
    assert "Face restoration" not in plain.infotexts[0]


def test_restore_faces_in_txt2img_with_the_service(loaded: Any, gfpgan_models_dir: Path) -> None:
    from modules.processing.infotext import parse_infotext

    service = FaceRestorerService(ModelPaths(gfpgan_models_dir), detector=FixedBoxes())  # no face: no network run
    result = _txt2img(loaded, service.restore_run_images, restore_faces=True)
    assert parse_infotext(result.infotexts[0])["Face restoration"] == "GFPGAN"
    assert result.warnings == []


def test_restore_faces_without_a_usable_model_warns(loaded: Any, gfpgan: FaceRestorerService) -> None:
    from modules.processing.infotext import parse_infotext

    plain = _txt2img(loaded, None)
    uninstalled = _txt2img(loaded, None, restore_faces=True)
    assert uninstalled.warnings == ["face restoration skipped: face restoration is not installed"]
    assert np.array_equal(np.asarray(uninstalled.images[0]), np.asarray(plain.images[0]))
    missing = _txt2img(loaded, gfpgan.restore_run_images, restore_faces=True,
                       options={"face_restoration_model": "CodeFormer"})
    assert missing.warnings[0].startswith("face restoration skipped: no CodeFormer model is installed")
    assert "Face restoration" not in parse_infotext(missing.infotexts[0])
    assert np.array_equal(np.asarray(missing.images[0]), np.asarray(plain.images[0]))
