"""Packaging for hpcsynth.

`kernels/` and `jobs/` stay at the top of the repository because they are first-class parts (the Numba
kernels and the batch jobs a scheduler runs), but they install as `hpcsynth.kernels` and `hpcsynth.jobs`
so that nothing generic lands in site-packages.
"""
from setuptools import setup

setup(
    name="hpcsynth",
    version="0.1.0",
    description="Federated synthetic health data on MPI ranks and SLURM clusters",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=[
        "hpcsynth",
        "hpcsynth.data",
        "hpcsynth.models",
        "hpcsynth.federated",
        "hpcsynth.evaluate",
        "hpcsynth.io",
        "hpcsynth.kernels",
        "hpcsynth.jobs",
    ],
    package_dir={"hpcsynth.kernels": "kernels", "hpcsynth.jobs": "jobs"},
    package_data={"hpcsynth.jobs": ["*.yaml"]},
    install_requires=[
        "torch>=2.2,<=2.14.1",
        "numpy>=1.24",
        "pandas>=2.0",
        "scipy>=1.10",
        "scikit-learn>=1.3",
        "pyyaml>=6.0",
        "h5py>=3.8",
        "mpi4py>=4.0",
        "numba>=0.60",
        "tqdm>=4.60",
        "pyarrow>=14",
        "submitit>=1.5",
        "matplotlib>=3.7",
        "scikit-survival>=0.22",
        "lifelines>=0.27",
        "cryptography>=42",
        "opacus>=1.4",
    ],
    extras_require={
        "mpich": ["mpich"],
        "test": ["pytest>=8", "hypothesis>=6.100", "pytest-timeout>=2.3", "sdmetrics>=0.18"],
        "bench": ["ctgan", "sdv", "sdmetrics", "faiss-cpu", "rdt[copulas]"],
        "gpu": ["nvidia-cuda-nvcc-cu12", "nvidia-cuda-runtime-cu12"],
    },
    entry_points={"console_scripts": ["hpcsynth=hpcsynth.cli:main"]},
)
