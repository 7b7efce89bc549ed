"""Resource limits: how much work one request may ask for, checked before the work starts.

They are launch flags (``--max-image-pixels`` ...), fixed for the life of the process, so that a client of the
API cannot raise them; the defaults are safe for a desktop with 16 GB of RAM. Every refusal is a 422 that
names the request field, the value asked for, the limit and the flag that raises it (``docs/LIMITS.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modules.core.settings import CmdFlags

from modules.core.errors import UserInputError

DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096
DEFAULT_MAX_OUTPUT_PIXELS = 8192 * 8192
DEFAULT_MAX_PROCESSOR_RES = 2048
DEFAULT_MAX_JOB_IMAGES = 1000
DEFAULT_MAX_STEPS = 1000
DEFAULT_CPU_WORKERS = 2


@dataclass(frozen=True)
class Limits:
    """The limits in force (see :class:`modules.core.settings.CmdFlags` for their flags)."""

    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    """Pixels of any image a request uploads (init images, masks, extras inputs, ControlNet images)."""
    max_output_pixels: int = DEFAULT_MAX_OUTPUT_PIXELS
    """Pixels of any image a job produces (hires fix, extras upscale, SD upscale, outpainting)."""
    max_processor_res: int = DEFAULT_MAX_PROCESSOR_RES
    """Resolution (short side, pixels) a ControlNet preprocessor may run at."""
    max_job_images: int = DEFAULT_MAX_JOB_IMAGES
    """Images one job may generate: batch_size x n_iter, times a script's loops, grid cells, lines or tiles."""
    max_steps: int = DEFAULT_MAX_STEPS
    """Sampling steps of one pass (steps, hr_second_pass_steps)."""
    cpu_workers: int = DEFAULT_CPU_WORKERS
    """Request-thread CPU work (image decoding, png-info, ControlNet detect) that may run at once."""

    @classmethod
    def from_flags(cls, flags: CmdFlags) -> Limits:
        return cls(max_image_pixels=flags.max_image_pixels, max_output_pixels=flags.max_output_pixels,
                   max_processor_res=flags.max_processor_res, max_job_images=flags.max_job_images,
                   max_steps=flags.max_steps, cpu_workers=flags.max_cpu_workers)

    def check_input_size(self, field: str, width: int, height: int) -> None:
        check_pixels(field, width, height, self.max_image_pixels, "--max-image-pixels", "input image")

    def check_output_size(self, field: str, width: float, height: float) -> None:
        check_pixels(field, width, height, self.max_output_pixels, "--max-output-pixels", "output")

    def check_images(self, field: str, count: int, what: str = "images") -> None:
        if count > self.max_job_images:
            raise UserInputError(field, f"the job would generate {count} {what}; the limit is "
                                        f"{self.max_job_images} per job (--max-job-images)")

    def check_steps(self, field: str, steps: int) -> None:
        if steps > self.max_steps:
            raise UserInputError(field, f"{steps} steps asked; allowed: 1..{self.max_steps} (--max-steps)")

    def check_processor_res(self, field: str, resolution: int) -> None:
        if resolution > self.max_processor_res:
            raise UserInputError(field, f"processor resolution {resolution} asked; allowed: -1 (default) or "
                                        f"1..{self.max_processor_res} (--max-processor-res)")


def check_pixels(field: str, width: float, height: float, limit: int, flag: str, what: str) -> None:
    pixels = int(width) * int(height)
    if pixels > limit:
        raise UserInputError(field, f"{what} of {int(width)}x{int(height)} = {pixels} pixels; the limit is "
                                    f"{limit} pixels ({flag})")
