"""hpcsynth: federated synthetic health data on MPI ranks and SLURM clusters."""

__version__ = "0.1.0"
