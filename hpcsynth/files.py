"""Who may read what hpcsynth writes: files that hold weights or statistics of real rows (run files, checkpoints,
saved generators) are the owner's alone; only a release file is readable by all."""
from __future__ import annotations

import os
from pathlib import Path

PRIVATE = 0o600  # run files, partial checkpoints, comparison files, saved generators
SHAREABLE = 0o644  # the release file only


def create_private(path: str | Path) -> None:
    """Create `path` empty and readable by its owner only, so that what is then written into it (writers that
    truncate keep the mode) is never readable by others, whatever the umask."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE))
    os.chmod(path, PRIVATE)
