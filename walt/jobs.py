"""`config.job` name -> the module that runs it.

Each module has `run(config, workdir, mode='train')`, optionally `VALIDATORS`
(extra config checks) and `describe(config)` (model summary without
allocation). The files each job reads are checked by `walt.preflight`
(`walt.main` runs both checks before `run`); a new job lists its inputs and
modes there.
"""

import importlib
from types import ModuleType

JOBS = {
    'data': 'walt.data.job',
    'eval': 'walt.evaluation.eval_job',
    'tokenizer': 'walt.train.tokenizer_trainer',
    'walt': 'walt.train.denoiser_trainer',
}


def load(name: str) -> ModuleType:
  if name not in JOBS:
    raise ValueError(f'config.job={name!r}; known jobs: {sorted(JOBS)}')
  return importlib.import_module(JOBS[name])
