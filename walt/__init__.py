"""W.A.L.T: window attention latent transformer video diffusion in JAX.

Importing the package (every `python -m walt.<entry>` does, before JAX)
keeps JAX from probing for a TPU on a machine that has none: with libtpu
installed, JAX otherwise initialises the TPU backend, which fails with
libtpu errors on stderr before falling back to the CPU. When
`JAX_PLATFORMS` is unset and the machine has no TPU and no GPU device
files, it is set to `cpu`; a machine with TPUs (or GPUs) is left alone, and
so is an explicit `JAX_PLATFORMS` (`JAX_PLATFORMS=` lets JAX probe).
"""

import glob as _glob
import os as _os

# TPU VMs expose their chips as /dev/accel* (v2-v5e) or through VFIO (v5p,
# v6e); GPUs as /dev/nvidia* (CUDA), /dev/kfd (ROCm) or /dev/dxg (WSL2).
_ACCELERATOR_FILES = ('/dev/accel*', '/dev/vfio', '/dev/nvidia0',
                      '/dev/nvidiactl', '/dev/kfd', '/dev/dxg')


def default_platforms(environ=None, accelerator_files=_ACCELERATOR_FILES
                      ) -> str | None:
  """'cpu' when `JAX_PLATFORMS` is unset in `environ` (default: this
  process's) and none of `accelerator_files` (glob patterns) exists; None
  (JAX chooses) otherwise."""
  environ = _os.environ if environ is None else environ
  if 'JAX_PLATFORMS' in environ:
    return None
  if any(_glob.glob(p) for p in accelerator_files):
    return None
  return 'cpu'


_PLATFORMS = default_platforms()
if _PLATFORMS:
  _os.environ['JAX_PLATFORMS'] = _PLATFORMS
