"""Under mpiexec -n 3*R: one full-batch SGD step per site with R ranks per site (data-parallel inside the site)
and FedAvg across sites; rank 0 saves the parameters. R=1 and R=2 must agree."""
import sys

import numpy as np
import torch

from hpcsynth.data.transformer import TableTransformer
from hpcsynth.comm import MPIComm
from hpcsynth.federated.loop import train_rounds
from hpcsynth.federated.site_parallel import SiteParallel
from hpcsynth.federated.strategies import make_strategy
from hpcsynth.models import TVAE

from fedavg_step import LATENT, noise, site_rows


def main(per_site: int, out: str) -> None:
    comm = MPIComm()
    site, local = comm.rank // per_site, comm.rank % per_site
    rows = site_rows(site).iloc[local::per_site].reset_index(drop=True)
    shard_noise = noise(site)[local::per_site]
    transformer = TableTransformer().fit(rows, comm)
    model = TVAE(hidden=[16, 16], latent_dim=LATENT, optimizer="sgd", lr=0.05, weight_decay=1e-4, seed=0)
    model.setup(transformer, stream=comm.rank)
    model.loss_noise = lambda n: shard_noise  # the rows keep the draws they get with one rank per site
    strategy = make_strategy("fedavg")
    if per_site > 1:
        strategy = SiteParallel(strategy, comm.split(site))
    train_rounds(model, model.to_device(transformer.encode(rows)), strategy, comm, rounds=1, local_epochs=1,
                 batch_size=10**6)
    if comm.rank == 0:
        np.save(out, model.shared_parameters().numpy())


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
