"""Inference: trained models restored for use, with no training code.

    from walt import inference
    tokenizer = inference.load_tokenizer('/path/to/tokenizer_workdir')
    gen = inference.load_denoiser('/path/to/denoiser_workdir')
    videos = gen.sample(labels=[0, 1, 2], seed=0, steps=50)

Both restore params only (EMA by default) from the run's checkpoint and
read its saved config; trainers, eval jobs and the CLIs build on this
package, never the reverse (a test checks that importing it loads nothing
under `walt.train`).
"""

from walt.inference.generator import Generator
from walt.inference.generator import load_denoiser
from walt.inference.tokenizer import TrainedTokenizer
from walt.inference.tokenizer import load_latent_stats
from walt.inference.tokenizer import load_tokenizer
from walt.inference.tokenizer import read_latent_stats

__all__ = ['Generator', 'TrainedTokenizer', 'load_denoiser',
           'load_latent_stats', 'load_tokenizer',
           'read_latent_stats']
