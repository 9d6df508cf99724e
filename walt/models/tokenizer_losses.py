"""Tokenizer losses (MAGVIT-v2 weights).

Generator: `l2_weight` x L2 + `perceptual_weight` x perceptual +
`gan_weight` x non-saturating GAN (+ tiny KL). Discriminator: non-saturating
GAN + R1 gradient penalty on real clips + LeCam regulariser against EMAs of
the real/fake logits.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def generator_adversarial(fake_logits: jax.Array) -> jax.Array:
  """Non-saturating: -log sigmoid(D(G(z)))."""
  return jnp.mean(jax.nn.softplus(-fake_logits))


def discriminator_adversarial(real_logits: jax.Array, fake_logits: jax.Array
                              ) -> jax.Array:
  return (jnp.mean(jax.nn.softplus(-real_logits)) +
          jnp.mean(jax.nn.softplus(fake_logits)))


def r1_penalty(disc_fn: Callable[[jax.Array], jax.Array], real: jax.Array
               ) -> tuple[jax.Array, jax.Array]:
  """(E ||grad_x D(x)||^2 over real clips, D(real) logits)."""
  logits, vjp = jax.vjp(disc_fn, real)
  (grad,) = vjp(jnp.ones_like(logits))
  penalty = jnp.mean(jnp.sum(jnp.square(grad), axis=tuple(range(1, grad.ndim))))
  return penalty, logits


def lecam(real_logits: jax.Array, fake_logits: jax.Array, ema_real: jax.Array,
          ema_fake: jax.Array) -> jax.Array:
  """LeCam regulariser (Tseng et al. 2021)."""
  return (jnp.mean(jnp.square(jax.nn.relu(real_logits - ema_fake))) +
          jnp.mean(jnp.square(jax.nn.relu(ema_real - fake_logits))))
