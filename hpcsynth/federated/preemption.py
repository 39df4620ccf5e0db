"""Stopping cleanly when the scheduler asks: SIGTERM (preemption, `scancel`) and SIGUSR1 (SLURM's
`--signal=USR1@T` warning before the time limit).

The handler only raises a flag. The round loop checks it after each round, and the ranks agree (any rank's
flag stops all, exchanged with the round's metrics), so every rank finishes the same round, the checkpoint of
that round is written, and all ranks leave together: no rank is left in a collective. A resumed job
(`hpcsynth run --resume`) continues from that checkpoint.
"""
from __future__ import annotations

import signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
INTERRUPTED_EXIT_CODE = 3


class Interrupted(Exception):
    """Raised on every rank after the checkpoint of the round in which a stop was requested."""

    def __init__(self, round_index: int, signal_name: str) -> None:
        super().__init__(f"stopped by {signal_name} after round {round_index + 1}; the checkpoint is saved, "
                         f"continue with `hpcsynth run --resume`")
        self.round_index = round_index


class StopRequest:
    """The flag the signal handlers raise; `install()` hooks them (main thread only)."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def _handle(self, signum: int, frame) -> None:
        self.signal_name = signal.Signals(signum).name

    def install(self) -> StopRequest:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)
        return self
