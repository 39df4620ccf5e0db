"""Run an mpiexec test program's checks so that one rank's failure stops every rank (MPI_Abort) instead of
leaving the others waiting in a collective."""
import traceback
from collections.abc import Callable

from hpcsynth.comm import MPIComm


def run_on_every_rank(main: Callable[[MPIComm], None]) -> None:
    world = MPIComm()
    try:
        main(world)
    except BaseException:
        traceback.print_exc()
        world.abort(1)
