"""What the user reads: warnings as one line on stderr, prefixed like errors, and the error a bad job file raises."""
import sys


def warn(message: str) -> None:
    """Tell the user about input that was handled but deserves a look."""
    sys.stderr.write(f"hpcsynth: warning: {message}\n")
    sys.stderr.flush()


class ConfigError(ValueError):
    """A configuration problem; the message names the file and the key."""
