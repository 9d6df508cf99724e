"""The jobs' default configs (the paper's settings on the common fields),
which config files start from and override. Data only: importing this loads
no model, trainer, data pipeline or Orbax code."""

import ml_collections

from walt import config_lib


def tokenizer():
  """The paper's tokenizer settings (MAGVIT-v2 losses and optimizer) on the
  common fields; config files override sizes and data."""
  c = config_lib.trainer_config('tokenizer')
  c.batch_size = 256
  c.total_steps = 500_000
  c.log_every = 100
  c.checkpoint_every = 5_000
  c.eval_every = 10_000
  c.summary_every = 10_000
  c.ema_decay = 0.999
  c.model = ml_collections.ConfigDict({
      'base_channels': 128, 'channel_multipliers': (1, 2, 2, 4),
      'num_res_blocks': 4, 'num_mid_blocks': 4,
      'temporal_downsample': (False, True, True), 'latent_channels': 8,
      'kl': False, 'temporal_kernel': 3, 'num_groups': 32,
      'normalize': True, 'norm': 'group', 'patch_size': (1, 1, 1), 'stem': 'space_to_depth',
      'spatial_downsample': (), 'conv_impl': 'xla',
      # Mixed precision (params, optimizer, norm statistics, loss: float32;
      # conv inputs and outputs bfloat16). CPU configs set float32.
      'dtype': 'bfloat16'})
  c.discriminator = ml_collections.ConfigDict({
      'base_channels': 64, 'channel_multipliers': (2, 4, 4, 4, 4)})
  c.loss = ml_collections.ConfigDict({
      'l2_weight': 5.0, 'l1_weight': 0.0, 'perceptual_weight': 0.1, 'perceptual_weights': '',
      'perceptual_start': 0,
      'gan_weight': 0.1, 'gan_start': 50_000, 'r1_weight': 10.0,
      'lecam_weight': 0.001, 'lecam_decay': 0.999, 'kl_weight': 1e-6})
  opt = {'lr': 1e-4, 'b1': 0.0, 'b2': 0.99, 'weight_decay': 0.0,
         'warmup_steps': 5_000, 'grad_clip': 0.0, 'min_lr_ratio': 0.0}
  c.optimizer = ml_collections.ConfigDict(opt)
  c.disc_optimizer = ml_collections.ConfigDict(opt)
  c.eval = ml_collections.ConfigDict({
      'split': 'validation', 'frames': 17, 'batch_size': 8,
      'num_examples': 1024, 'num_summary_videos': 2})
  c.latent_stats = ml_collections.ConfigDict({'num_examples': 2048,
                                              'batch_size': 8})
  return c


def denoiser():
  """The paper's denoiser settings (Table 8) on the common fields."""
  c = config_lib.trainer_config('walt')
  c.batch_size = 256
  c.total_steps = 60_000
  c.log_every = 100
  c.checkpoint_every = 5_000
  c.eval_every = 0
  c.summary_every = 5_000
  c.ema_decay = 0.9999
  c.tokenizer = ml_collections.ConfigDict({
      'workdir': '', 'temporal_factor': 4, 'spatial_factor': 8,
      'latent_channels': 8})
  c.latents = ml_collections.ConfigDict({
      'cache': '', 'batch_size': 8, 'num_examples': 0})
  c.model = ml_collections.ConfigDict({
      # `size` (S/B/L/XL) fills num_layers/width/num_heads left at 0;
      # explicit values win (`--config.model.num_layers=12`).
      'size': 'L', 'num_layers': 0, 'width': 0, 'num_heads': 0,
      'patch_size': 1, 'mlp_ratio': 4, 'spatial_window': (0, 0),
      'spatiotemporal_window': (0, 8, 8), 'adaln': 'lora', 'lora_rank': 2,
      'num_classes': 0, 'self_conditioning': True,
      'frame_conditioning': True, 'scan': True, 'remat': 'none',
      # Layer pairs per scan iteration (0 = all: straight-line code with the
      # stacked params; 16% faster train steps on CPU, walt.benchmark peer).
      'scan_unroll': 1,
      # Mixed precision: bfloat16 matmuls and activations; params,
      # optimizer state, norms, softmax and loss float32. CPU configs
      # set float32 (no faster there).
      'dtype': 'bfloat16', 'position_init': 'sincos',
      # Attention kernel (walt.models.attention.ATTENTION_KERNELS): 'xla'
      # runs anywhere; 'cudnn' (GPUs) and 'pallas' (TPUs) are fused flash
      # kernels computing the same function.
      'attention': 'xla',
      # Cascade stages: SR input channels and factor, text embedding width
      # (0: off; see walt.models.denoiser).
      'low_res_channels': 0, 'sr_factor': 2, 'text_dim': 0,
      'text_layers': 'all',
      # A zero-initialised 3x3 conv on the output latent (see
      # walt.models.denoiser); off in the paper configs.
      'output_conv': False})
  c.diffusion = ml_collections.ConfigDict({
      'num_steps': 1000, 'beta_start': 1e-4, 'beta_end': 0.02,
      'zero_terminal_snr': True, 'self_cond_prob': 0.9,
      'class_dropout': 0.1, 'frame_cond_prob': 0.0, 'frame_cond_frames': 2,
      # Relative weights of the frame conditioning modes (objectives.py).
      'frame_cond_modes': {'predict': 1.0, 'image': 0.0, 'interpolate': 0.0},
      # The paper: t uniform, unweighted v-MSE (see diffusion/objectives.py).
      't_sampling': 'uniform', 't_logit_mean': 0.0, 't_logit_std': 1.0,
      'loss_weighting': 'none', 'min_snr_gamma': 5.0,
      # Cascade stages: text dropout (guidance on text) and the largest
      # noise-augmentation level of an SR stage's low-res latent (t_sr).
      'text_dropout': 0.1, 'sr_noise_max': 0.3})
  c.cascade = ml_collections.ConfigDict({
      # SR stages (model.low_res_channels > 0): the low-resolution stage's
      # tokenizer (its trained workdir and compression factors) and clip
      # size; its latents condition this stage.
      'low_res_tokenizer': {'workdir': '', 'temporal_factor': 4,
                            'spatial_factor': 8, 'latent_channels': 8},
      'low_res_resolution': (0, 0),
      # Text models (model.text_dim > 0): 'builtin[:DIM]' or 't5:DIR'
      # (walt.text.encoders.load_encoder) and its token count.
      'text_encoder': '', 'text_length': 64})
  c.optimizer = ml_collections.ConfigDict({
      'lr': 5e-4, 'b1': 0.9, 'b2': 0.99, 'weight_decay': 0.01,
      'warmup_steps': 5_000, 'grad_clip': 1.0, 'min_lr_ratio': 0.0})
  c.eval = ml_collections.ConfigDict({
      'sampler': 'ddim', 'steps': 50, 'eta': 0.0, 'guidance': 1.0,
      'samples_per_class': 8,
      'batch_size': 32, 'num_summary_videos': 4,
      # > 0: also score tokenizer round trips of this many validation clips
      'reference_examples': 0,
      # SR stages: the noise-augmentation level t_sr of the low-res latent
      # at sampling, in [0, 1).
      'sr_noise': 0.0,
      # Cascade stages: held-out clips sampled and scored (cascade_eval).
      'cascade_examples': 96})
  return c


EVAL_TASKS = ('ucf101', 'k600_frame_prediction', 'imagenet', 'sprites')


def evaluation(task: str) -> ml_collections.ConfigDict:
  """An eval job (`walt.evaluation.eval_job`) of `task`."""
  if task not in EVAL_TASKS:
    raise ValueError(f'unknown eval task {task!r}: {EVAL_TASKS}')
  c = config_lib.base_config(clips=False, steps=False)
  c.job = 'eval'
  c.task = task
  c.generator_workdir = ''  # the trained denoiser's workdir
  c.step = 0  # 0: the latest checkpoint (and every later one when polling)
  c.poll_seconds = 0  # > 0: poll the generator workdir for new checkpoints
  c.stop_at_step = 0  # polling ends once this step is evaluated (0: never)
  c.num_samples = 10_000  # per repeat
  c.repeats = 1
  c.batch_size = 16  # samples per sampler call (global)
  c.sampler = ml_collections.ConfigDict(
      {'sampler': 'ddim', 'steps': 50, 'guidance': 1.0, 'eta': 0.0,
       # Per-condition scales (`walt.sample --guidance_class/_frames`);
       # unset: `guidance`.
       'guidance_class': ml_collections.config_dict.placeholder(float),
       'guidance_frames': ml_collections.config_dict.placeholder(float),
       # > 0: condition on given frames by reconstruction guidance (w_r)
       # instead of the model's frame channels (models trained without).
       'reconstruction_weight': 0.0})
  c.features = ml_collections.ConfigDict({
      'weights': '',  # converted feature-network weights (.npz)
      'resize_method': 'tf1',  # I3D input resize (FVD reference: TF1 grid)
      'batch_size': 8,
  })
  c.cond_frames = 0  # frame prediction: given frames
  c.interpolate = False  # sprites: keyframe interpolation scores too
  c.eval_frames = 16  # frames scored (FVD clips)
  c.reference = ml_collections.ConfigDict({
      'stats': '',  # precomputed reference statistics (.npz with mu, sigma)
      'split': 'train',
      'num_examples': 0,  # 0: as many as num_samples
  })
  c.save_samples = False  # write the samples as samples.npz (uint8)
  c.data.build = False
  return c
