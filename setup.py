"""Distil: a Bittensor subnet for competitive model distillation (netuid 97)."""

import re
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = re.search(r'^__version__ = "([^"]+)"', (here / "distil" / "__init__.py").read_text(), re.M).group(1)

setup(
    name="distil-subnet",
    version=version,
    description="Bittensor subnet 97: distil Qwen/Qwen3.5-35B-A3B into a student of at most 5.25B parameters",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["distil", "distil.*", "template", "template.*"]),
    install_requires=[
        "bittensor==10.5.0",  # 11.x is a different SDK without Axon/Dendrite/Synapse
        "torch>=2.6",  # unpinned build: GPU machines get CUDA, `make test` installs the CPU wheel first
        "transformers>=5.0,<6",
        "accelerate>=1.10",  # `device_map` in the one load call (distil/checks/loading.py), on every device; distil-train
        "safetensors>=0.4",
        "huggingface_hub>=2.0,<3",
        "datasets>=4.0",
        "loguru>=0.7",
        "wandb>=0.19",
        "numpy>=1.26",
        "scipy>=1.11",
    ],
    extras_require={
        "dev": ["pytest>=8", "hypothesis>=6.100", "pytest-timeout>=2.3"],
        "docs": ["mkdocs>=1.6", "mkdocs-material>=9.5"],
        # Fast kernels of the teacher's gated-delta-net layers (and Qwen3.5 students'), pure-Python
        # wheels (Triton kernels, compiled at first use). causal-conv1d ships no wheel: it is built
        # from source by hand (needs nvcc), see docs/validators.md. See distil/eval/fastpaths.py.
        "gpu": ["flash-linear-attention==0.6.0", "fla-core==0.6.0", "einops==0.8.2"],
    },
    entry_points={
        "console_scripts": [
            "distil-eval=distil.eval.cli:main",
            "distil-check=distil.checks.cli:main",
            "distil-state=distil.state_cli:main",
            "distil-train=distil.train.cli:main",
        ]
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: MIT License",
        "Operating System :: POSIX :: Linux",
    ],
)
