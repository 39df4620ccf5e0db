"""Under mpiexec -n 2*R: every strategy that accepts several ranks per site, on two sites of R ranks each
(data-parallel inside a site, the strategy across sites), two rounds of two full-batch SGD steps with fixed
reparameterisation noise; rank 0 saves each site's parameters (`<out>.npz`, one array per strategy). R=1 and
R=2 must agree. sd_sharing saves its first phase's site models and checks that its shared model is one."""
import sys

import numpy as np
from every_rank import run_on_every_rank
from fedavg_step import LATENT, noise, site_rows

from hpcsynth.comm import MPIComm
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.federated.loop import train_rounds
from hpcsynth.federated.registry import STRATEGIES, make_strategy
from hpcsynth.federated.wrappers import within_site
from hpcsynth.models import TVAE

SITES = 2
OPTIONS = {"mu": 0.5, "server_lr": 0.05}
CASES = {**{name: OPTIONS for name, cls in STRATEGIES.items() if not cls.site_parallel_gap},
         "fedavg+secure": {**OPTIONS, "secure_aggregation": True}}


def model(transformer: TableTransformer, stream: int) -> TVAE:
    """Plain SGD with a step small enough that no site diverges in four steps on the pooled transform."""
    m = TVAE(hidden=[16, 16], latent_dim=LATENT, optimizer="sgd", lr=0.005, weight_decay=1e-4, seed=0)
    return m.setup(transformer, stream=stream)


def main(per_site: int, out: str, comm: MPIComm) -> None:
    site, shard = comm.rank // per_site, comm.rank % per_site
    site_comm = comm.split(site)
    rows = site_rows(site).iloc[shard::per_site].reset_index(drop=True)
    shard_noise = noise(site)[shard::per_site]
    transformer = TableTransformer().fit(rows, comm)
    saved = {}
    for case, options in CASES.items():
        local = model(transformer, comm.rank)
        local.loss_noise = lambda n: shard_noise  # the rows keep the draws they get with one rank per site
        data = local.to_device(transformer.encode(rows))
        strategy = within_site(make_strategy(case.split("+")[0], options), site_comm)
        strategy.attach(local, data, comm)  # as the job does (scaffold binds the model's lr)
        if strategy.phased:
            shared = strategy.train(local, data, comm, 2, 2, 10**6, lambda m, s: (lambda r: None),
                                    lambda: model(transformer, comm.rank))
            every = comm.allgather(shared.shared_parameters().numpy().copy())
            assert all(np.array_equal(p, every[0]) for p in every), f"{case}: the shared models differ"
        else:
            train_rounds(local, data, strategy, comm, rounds=2, local_epochs=2, batch_size=10**6)
        gathered = comm.gather(local.shared_parameters().numpy().copy())
        if comm.rank == 0:
            for k in range(SITES):  # the ranks of a site hold the same parameters
                first = gathered[k * per_site]
                gap = max(float(np.abs(p - first).max()) for p in gathered[k * per_site:(k + 1) * per_site])
                assert gap < 1e-6, f"{case}: the ranks of site {k} differ by {gap}"
            saved[case] = np.stack(gathered[::per_site])
    if comm.rank == 0:
        np.savez(out, **saved)
        print("SAVED", sorted(saved), flush=True)


if __name__ == "__main__":
    run_on_every_rank(lambda world: main(int(sys.argv[1]), sys.argv[2], world))
