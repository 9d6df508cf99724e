"""The sampling API's historic home: `walt.sampler.Generator` is
`walt.inference.Generator` (kept for users' scripts)."""

from walt.inference.generator import Generator  # noqa: F401
from walt.inference.generator import load_denoiser  # noqa: F401
