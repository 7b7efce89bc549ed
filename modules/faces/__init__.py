"""Face restoration: GFPGAN/RestoreFormer and CodeFormer weights from ``models/GFPGAN`` and ``models/Codeformer``,
applied to the faces an offline detector finds.

:func:`install` is the warm-up hook that wires the restorers into the extras job, the generation processor
(``restore_faces``) and the API's ``/sdapi/v1/face-restorers`` list.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def install(services: Any) -> None:
    """Warm-up hook: the face restorer service (``services.extensions["faces"]``), handed to the extras job and
    to the generation processor. Call it after :func:`modules.upscalers.install` (which builds the extras job)."""
    from modules.faces.service import FaceRestorerService

    settings = services.settings
    device = getattr(services.device, "device", None)
    faces = FaceRestorerService(settings.model_paths, device=device, allow_pickle=settings.flags.allow_pickle)
    services.extensions["faces"] = faces
    extras = services.extensions.get("extras")
    if extras is not None:
        extras.face_restorers = faces
    if services.generation is not None:
        services.generation.processor.face_restoration = faces.restore_run_images
    if faces.names():
        reason = getattr(faces.detector, "unavailable_reason", lambda: None)()
        if reason:
            log.warning("face restorers %s are installed but cannot run: %s", ", ".join(faces.names()), reason)
