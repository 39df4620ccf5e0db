"""hpcsynth: federated synthetic health data on MPI ranks and SLURM clusters."""
import os

# Same seed, same machine, same samples: MKL's dynamic threading may run a product on fewer threads than asked
# when it judges the machine busy, which changes the summation order and so the last bits of a training step
# (seen after the k-NN kernel's own MKL calls, and under load). Fixed thread counts keep runs repeatable; set
# before anything loads MKL, and only where the user has not chosen.
os.environ.setdefault("MKL_DYNAMIC", "FALSE")

__version__ = "0.1.0"
