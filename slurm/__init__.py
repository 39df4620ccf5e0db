"""The sbatch templates, installed as package data of `hpcsynth.slurm` (`slurm/` in a checkout).

`cpu.sbatch` and `gpu.sbatch` work as written with `sbatch`; `hpcsynth.submit` reads them through
`importlib.resources`, so `hpcsynth submit --sbatch` works from an installed wheel too. The rest of this folder
(`local-cluster.sh`, `bin/sacct`, `scale-study.yaml`) serves a checkout only and is not installed.
"""
