"""Key-name facts of the original (LDM / sgm) single-file layout that several families test for.

These are the names Stability's reference code gives its modules; every fine-tune shared as a single file
keeps them, which is what makes header-only recognition reliable.
"""

from __future__ import annotations

from modules.models.families.base import CheckpointHeader

UNET = "model.diffusion_model."
UNET_CONV_IN = UNET + "input_blocks.0.0.weight"
UNET_LABEL_EMB = UNET + "label_emb.0.0.weight"
SD1_TEXT = "cond_stage_model.transformer."  # OpenAI CLIP ViT-L, transformers layout
SD2_TEXT = "cond_stage_model.model."  # OpenCLIP ViT-H, open_clip layout
SDXL_TEXT_L = "conditioner.embedders.0.transformer."  # CLIP ViT-L in SDXL base
SDXL_TEXT_G = "conditioner.embedders.1.model."  # OpenCLIP ViT-bigG in SDXL base
REFINER_TEXT_G = "conditioner.embedders.0.model."  # the refiner's only text encoder
PLAYGROUND_MARKERS = ("edm_mean", "edm_std")  # Playground v2.5 ships its EDM latent statistics in the file
V_PREDICTION_MARKER = "v_pred"  # an empty tensor some tools add to mark v-prediction checkpoints


def unet_in_channels(header: CheckpointHeader) -> int | None:
    shape = header.shape(UNET_CONV_IN)
    return shape[1] if shape is not None and len(shape) == 4 else None


def has_unet(header: CheckpointHeader) -> bool:
    return UNET_CONV_IN in header


def is_sdxl_unet(header: CheckpointHeader) -> bool:
    """SDXL's UNet conditions on pooled text + size/crop embeddings through `label_emb`; SD1/SD2 have none."""
    return UNET_LABEL_EMB in header


def marks_v_prediction(header: CheckpointHeader) -> bool:
    """Evidence that a checkpoint predicts v: a marker key, or modelspec / training metadata saying so."""
    if V_PREDICTION_MARKER in header:
        return True
    meta = {key.lower(): value.lower() for key, value in header.metadata.items()}
    if meta.get("modelspec.prediction_type", "") in {"v", "v_prediction", "v-prediction"}:
        return True
    if meta.get("ss_v_parameterization", "") in {"true", "1"}:
        return True
    architecture = meta.get("modelspec.architecture", "")
    return architecture.endswith("-v") or "v-prediction" in architecture
