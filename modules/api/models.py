"""A1111's ``modules.api.models`` names for drop-in extensions, bound to Easel's request and response models
(the same pydantic models ``/sdapi/v1`` validates with), so an extension's own routes can reuse them."""

from __future__ import annotations

from modules.api.schemas import (
    ExtrasBatchImagesRequest,
    ExtrasBatchImagesResponse,
    ExtrasSingleImageRequest,
    ExtrasSingleImageResponse,
    FaceRestorerItem,
    ImageToImageResponse,
    PNGInfoRequest,
    PNGInfoResponse,
    ProgressResponse,
    PromptStyleItem,
    SamplerItem,
    ScriptsList,
    SDModelItem,
    SDVaeItem,
    TextToImageResponse,
    UpscalerItem,
)
from modules.processing.params import Img2ImgParams, Txt2ImgParams

StableDiffusionTxt2ImgProcessingAPI = Txt2ImgParams
StableDiffusionImg2ImgProcessingAPI = Img2ImgParams

__all__ = ["ExtrasBatchImagesRequest", "ExtrasBatchImagesResponse", "ExtrasSingleImageRequest",
           "ExtrasSingleImageResponse", "FaceRestorerItem", "ImageToImageResponse", "PNGInfoRequest",
           "PNGInfoResponse", "ProgressResponse", "PromptStyleItem", "SDModelItem", "SDVaeItem", "SamplerItem",
           "ScriptsList", "StableDiffusionImg2ImgProcessingAPI", "StableDiffusionTxt2ImgProcessingAPI",
           "TextToImageResponse", "UpscalerItem"]
