"""Face restoration: GFPGAN/RestoreFormer and CodeFormer weights from ``models/GFPGAN`` and ``models/Codeformer``,
applied to the faces an offline detector finds.

The composition root builds the :class:`~modules.faces.service.FaceRestorerService` and hands it to the extras
job, the generation processor (``restore_faces``) and the API's ``/sdapi/v1/face-restorers`` list.
"""
