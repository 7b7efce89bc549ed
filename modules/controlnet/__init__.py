"""ControlNet: units (model, preprocessor, image, weight, guidance range, control mode) applied inside Easel's
denoising loop for txt2img, img2img and hires fix, with sd-webui-controlnet's API shapes. A unit's model is a
ControlNet, a T2I-Adapter or an IP-Adapter from ``models/ControlNet``.

The composition root builds the :class:`~modules.controlnet.service.ControlNetService` and adds its run
customizer (units from ``alwayson_scripts``) and finalizer (undo IP-Adapter patches) to generation."""
