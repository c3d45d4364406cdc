"""t2t: T5-style text-to-text pretraining ablations in JAX/Flax."""
import setuptools

TEST = [
    "pytest>=8",
    "pytest-xdist>=3",
    "scikit-learn>=1.3",
    "scipy>=1.11",
    "pandas>=2",
    "nbclient>=0.10",
    "nbformat>=5.9",
    "ipykernel>=6",
    "matplotlib>=3.8",
    # Independent reference implementations for model tests (CPU build; see README).
    "torch==2.13.0",
    "transformers>=4.57,<4.58",
    # Static checks the CI line runs (ruff.toml, .pylintrc).
    "ruff>=0.6",
    "pylint>=3.2",
]

setuptools.setup(
    name="t2t",
    version="0.1.0",
    description="T5-style text-to-text pretraining ablations in JAX/Flax",
    packages=setuptools.find_packages(include=["t2t", "t2t.*", "configs"]),
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.10.2",
        "flax>=0.12.8",
        "optax>=0.2.8",
        "orbax-checkpoint>=0.12.8",
        "grain>=0.2.18",
        "tensorflow-datasets>=4.9.10",
        "sentencepiece>=0.2.0",
        "ml_collections>=1.1.0",
        "numpy>=1.26",
        "tqdm>=4.66",
        "pandas>=2",
        "scikit-learn>=1.3",
        "scipy>=1.11",
        "tensorboardX>=2.6",
        "nltk>=3.8",          # C4 cleaning: Punkt sentence splitting
        "langdetect>=1.0.9",  # C4 cleaning: the language filter TFDS uses
        "absl-py>=1.4",
        "safetensors>=0.4",   # Hugging Face checkpoint import/export
        "tabulate>=0.9",      # markdown results tables
    ],
    extras_require={
        "test": TEST,
        "notebooks": ["jupyter", "matplotlib>=3.8", "nbclient>=0.10", "ipykernel>=6"],
        "tfds": ["tensorflow>=2.16"],
    },
)
