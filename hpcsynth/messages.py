"""Warnings for the user: one line on stderr, prefixed like errors, without Python's file and line noise."""
import sys


def warn(message: str) -> None:
    """Tell the user about input that was handled but deserves a look."""
    sys.stderr.write(f"hpcsynth: warning: {message}\n")
    sys.stderr.flush()
