"""The ControlNet service: control models (ControlNets, T2I-Adapters, IP-Adapters), preprocessors, the run
customizer that attaches units to a run, and the finalizer that undoes a run's IP-Adapter patch."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from modules.controlnet.ip_adapter import ImageEncoderCache
from modules.controlnet.models import NONE_MODEL, ControlNetCatalog
from modules.controlnet.preprocessors import PreprocessorRegistry, build_registry, run_preprocessor
from modules.controlnet.runtime import ControlNetProvider, PreparedUnit
from modules.controlnet.units import ControlNetUnit, units_from_alwayson
from modules.core.errors import UserInputError
from modules.core.limits import Limits
from modules.processing.image_codec import decode_base64_image, encode_base64
from modules.processing.params import GenerationParams
from modules.processing.run import ProcessingRun

log = logging.getLogger(__name__)


class ControlNetService:
    def __init__(self, folder: Path, *, cache_size: int = 2, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.catalog = ControlNetCatalog(folder, cache_size)
        self.preprocessors: PreprocessorRegistry = build_registry()
        self.image_encoders = ImageEncoderCache()

    # -- listing (sd-webui-controlnet's /controlnet/* shapes) ---------------------------------------------------
    def model_list(self, update: bool = True) -> dict[str, list[str]]:
        if update:
            self.catalog.refresh()
        return {"model_list": self.catalog.names()}

    def module_list(self, alias_names: bool = False) -> dict[str, Any]:
        names = self.preprocessors.names(alias_names)
        details = {shown: self.preprocessors.get(shown).detail() for shown in names}
        return {"module_list": names, "module_detail": details}

    def detect(self, module: str, images: list[str], resolution: int = -1, threshold_a: float = -1,
               threshold_b: float = -1) -> dict[str, Any]:
        self.limits.check_processor_res("controlnet_processor_res", resolution)
        self.preprocessors.get(module, "controlnet_module")
        if not images:
            raise UserInputError("controlnet_input_images", "no input images")
        results = []
        for index, data in enumerate(images):
            image = decode_base64_image(data, f"controlnet_input_images[{index}]", self.limits.max_image_pixels)
            detected = run_preprocessor(self.preprocessors, module, image, resolution=resolution,
                                        threshold_a=threshold_a, threshold_b=threshold_b,
                                        field_name="controlnet_module", max_pixels=self.limits.max_image_pixels,
                                        resolution_field="controlnet_processor_res")
            results.append(encode_base64(detected))
        return {"images": results, "info": "Success"}

    # -- runs -------------------------------------------------------------------------------------------------
    def customize(self, run: ProcessingRun, params: GenerationParams) -> None:
        """Run customizer: units from ``alwayson_scripts`` (sd-webui-controlnet's API shape)."""
        key, raw = units_from_alwayson(params.alwayson_scripts or {})
        if key is not None:
            self.attach(run, raw, f"alwayson_scripts.{key}.args")

    def attach(self, run: ProcessingRun, raw_units: list[Any], field_prefix: str = "controlnet"
               ) -> list[PreparedUnit]:
        """Validate units and attach them to ``run`` (replacing units attached before: idempotent)."""
        prepared: list[PreparedUnit] = []
        for index, raw in enumerate(raw_units):
            unit = self._parse(raw, f"{field_prefix}[{index}]")
            if unit is None or not unit.enabled or unit.model in ("", NONE_MODEL):
                continue
            self.limits.check_processor_res(f"{field_prefix}[{index}].processor_res", unit.processor_res)
            file = self.catalog.find(unit.model, f"{field_prefix}[{index}].model")
            self.preprocessors.get(unit.module, f"{field_prefix}[{index}].module")
            data = unit.image_data()
            if data is not None:
                source = decode_base64_image(data, f"{field_prefix}[{index}].image", self.limits.max_image_pixels)
            elif run.init_images:
                source = run.init_images[0]  # img2img: the init image is the control input
            else:
                raise UserInputError(f"{field_prefix}[{index}].image", "ControlNet unit is enabled but has no "
                                                                       "input image")
            prepared.append(PreparedUnit(index, unit, source.convert("RGB"), file.kind, field_prefix))
        for key in [k for k in run.extra_generation_params if k.startswith("ControlNet ")]:
            del run.extra_generation_params[key]
        run.control_provider = None
        if prepared:
            run.control_provider = ControlNetProvider(prepared, self.catalog, self.preprocessors, self.image_encoders)
            for number, item in enumerate(prepared):
                run.extra_generation_params[f"ControlNet {number}"] = item.unit.infotext()
        return prepared

    @staticmethod
    def finalize(run: ProcessingRun) -> None:
        """Processor finalizer: undo the run's IP-Adapter patches, so the next job runs the untouched UNet."""
        if run.control_provider is not None:
            run.control_provider.close()

    @staticmethod
    def _parse(raw: Any, field: str) -> ControlNetUnit | None:
        if raw is None:
            return None
        if isinstance(raw, ControlNetUnit):
            return raw
        if not isinstance(raw, dict):  # a unit object from a script/UI: read its attributes
            raw = {name: getattr(raw, name) for name in ControlNetUnit.model_fields if hasattr(raw, name)}
        try:
            return ControlNetUnit.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first.get("loc", ()))
            raise UserInputError(f"{field}.{where}" if where else field, first.get("msg", "invalid unit")) from exc
