"""Under mpiexec -n 3, one program for every check (each mpiexec start costs seconds): SCAFFOLD, FedDyn and FedAvgM
through the real round loop and the real Allreduce, two rounds of mini-batch steps (batches of 10 rows, so 4, 3
and 6 local steps on the three sites). Each site's local model just before aggregation is gathered, and the
strategy's written formula is recomputed from them in numpy (float64), round by round:

scaffold   parameters, c and every c_k, against option II; under plain SGD without weight decay also
           c_k = the mean of the site's raw gradients, which holds only if every step added c - c_k (except on
           TVAE's decoder scale sigma, which its projection clamps after the first step); bytes reduced per
           round = parameters + control variates; again with secure aggregation.
feddyn     parameters, h and every grad_k.
fedavgm    parameters and the momentum; with beta 0 and server lr 1 it is FedAvg (within float32 rounding).
"""
import numpy as np
import pandas as pd
from every_rank import run_on_every_rank

from hpcsynth.comm import MPIComm
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.federated.loop import train_rounds
from hpcsynth.federated.registry import make_strategy
from hpcsynth.models import TVAE

SIZES = (40, 25, 55)
BATCH = 10
LR = 0.01
STEPS = [-(-n // BATCH) for n in SIZES]  # one local epoch of batches of 10 rows
WEIGHTS = np.array(SIZES, dtype=np.float64) / sum(SIZES)


def site_rows(k: int) -> pd.DataFrame:
    rng = np.random.default_rng(10 + k)
    n = SIZES[k]
    return pd.DataFrame({"x": rng.normal(k, 1.0, n), "c": rng.choice(["a", "b"], n, p=[0.3 + 0.2 * k, 0.7 - 0.2 * k])})


def fresh(transformer: TableTransformer, stream: int = 0) -> TVAE:
    model = TVAE(hidden=[8], latent_dim=2, optimizer="sgd", lr=LR, weight_decay=0.0, seed=0)
    return model.setup(transformer, stream=stream)


def trained(name: str, options: dict, comm: MPIComm, transformer: TableTransformer):
    """Two rounds of `name`; returns the final parameters, the strategy, every round's gathered local models
    (sites x parameters), the raw gradients of this site's steps per round, and the round records."""
    model = fresh(transformer, comm.rank)
    data = model.to_device(transformer.encode(site_rows(comm.rank)))
    strategy = make_strategy(name, options)
    strategy.attach(model, data, comm)
    local_models, raw_gradients = [], []
    aggregate, on_gradients = strategy.aggregate, strategy.on_gradients

    def recording_aggregate(params, c):
        local_models.append(np.stack(comm.allgather(params.double().numpy().copy())))
        aggregate(params, c)

    def recording_gradients(grad, rows, c):
        if len(raw_gradients) < len(local_models) + 1:
            raw_gradients.append([])
        raw_gradients[-1].append(grad.double().numpy().copy())
        on_gradients(grad, rows, c)

    strategy.aggregate, strategy.on_gradients = recording_aggregate, recording_gradients
    records = train_rounds(model, data, strategy, comm, rounds=2, local_epochs=1, batch_size=BATCH)
    return model.shared_parameters().double().numpy().copy(), strategy, local_models, raw_gradients, records


def close(name: str, got, want, tolerance: float) -> None:
    error = float(np.abs(np.asarray(got, dtype=np.float64) - want).max())
    assert error < tolerance, f"{name}: max difference {error:.3e}"


def check_scaffold(comm: MPIComm, transformer: TableTransformer, secure: bool) -> None:
    got, strategy, local_models, raw, records = trained("scaffold", {"secure_aggregation": secure}, comm, transformer)
    reference = fresh(transformer)
    x = reference.shared_parameters().double().numpy()
    n = x.size
    sigma = reference.decoder_.sigma
    start = (sigma.data_ptr() - reference.flat_.data.data_ptr()) // sigma.element_size()
    unclamped = np.ones(n, dtype=bool)
    unclamped[start:start + sigma.numel()] = False
    c, c_local = np.zeros(n), np.zeros((3, n))
    for r, y in enumerate(local_models):  # the written formula, round by round
        updated = c_local - c + (x - y) / (np.array(STEPS, dtype=np.float64)[:, None] * LR)
        x = WEIGHTS @ y
        c = c + WEIGHTS @ (updated - c_local)
        c_local = updated
        assert len(raw[r]) == STEPS[comm.rank]
        # option II under plain SGD: c_k+ is the mean raw gradient of the round (if each step added c - c_k)
        close(f"scaffold round {r} c_k vs mean raw gradient", c_local[comm.rank][unclamped],
              np.mean(raw[r], axis=0)[unclamped], 5e-5)
    # float32 parameters: (x - y) / (K lr) amplifies their rounding by 1 / (K lr) <= 33 (errors seen: 5e-6);
    # masks add at most 1.5 fixed-point steps of 2^-24 to each sum
    tolerance = 5e-5
    close("scaffold parameters", got, x, 1e-6)
    close("scaffold c", strategy.state()["c"].double().numpy(), c, tolerance)
    close("scaffold c_k", strategy.state()["c_local"].double().numpy(), c_local[comm.rank], tolerance)
    fedavg_like = WEIGHTS @ local_models[1]
    assert np.abs(c).max() > 1e-2 and np.abs(got - fedavg_like).max() < 1e-6  # server lr 1
    assert [rec.bytes_reduced for rec in records] == [(8 if secure else 4) * 2 * n] * 2, records
    print(f"rank {comm.rank}: scaffold secure={secure} |c| {np.abs(c).max():.3e} OK", flush=True)


def check_feddyn(comm: MPIComm, transformer: TableTransformer) -> None:
    alpha = 0.1
    got, strategy, local_models, _, records = trained("feddyn", {"feddyn_alpha": alpha}, comm, transformer)
    theta = fresh(transformer).shared_parameters().double().numpy()
    grad_local, h = np.zeros((3, theta.size)), np.zeros(theta.size)
    for y in local_models:
        grad_local = grad_local - alpha * (y - theta)
        average = WEIGHTS @ y
        h = h - alpha * (average - theta)
        theta = average - h / alpha
    close("feddyn parameters", got, theta, 2e-6)
    close("feddyn h", strategy.state()["h"].double().numpy(), h, 2e-6)
    close("feddyn grad_k", strategy.state()["grad_local"].double().numpy(), grad_local[comm.rank], 2e-6)
    assert np.abs(got - WEIGHTS @ local_models[1]).max() > 1e-3  # not the plain average
    assert [rec.bytes_reduced for rec in records] == [4 * theta.size] * 2
    print(f"rank {comm.rank}: feddyn OK", flush=True)


def check_fedavgm(comm: MPIComm, transformer: TableTransformer) -> None:
    beta, lr = 0.9, 0.7
    got, strategy, local_models, _, records = trained(
        "fedavgm", {"server_momentum": beta, "server_lr_momentum": lr, "server_lr": 0.01}, comm, transformer)
    theta = fresh(transformer).shared_parameters().double().numpy()
    m = np.zeros(theta.size)
    for y in local_models:
        m = beta * m + (WEIGHTS @ y - theta)
        theta = theta + lr * m
    close("fedavgm parameters", got, theta, 2e-6)
    close("fedavgm momentum", strategy.state()["m"].double().numpy(), m, 2e-6)
    assert [rec.bytes_reduced for rec in records] == [4 * theta.size] * 2
    plain = trained("fedavgm", {"server_momentum": 0.0, "server_lr_momentum": 1.0}, comm, transformer)[0]
    fedavg = trained("fedavg", {}, comm, transformer)[0]
    close("fedavgm beta 0 lr 1 vs fedavg", plain, fedavg, 1e-6)
    assert np.abs(got - fedavg).max() > 1e-3
    print(f"rank {comm.rank}: fedavgm OK", flush=True)


def main(comm: MPIComm) -> None:
    transformer = TableTransformer().fit(site_rows(comm.rank), comm)
    for secure in (False, True):
        check_scaffold(comm, transformer, secure)
    check_feddyn(comm, transformer)
    check_fedavgm(comm, transformer)
    print(f"rank {comm.rank}: ALL OK", flush=True)


if __name__ == "__main__":
    run_on_every_rank(main)
