"""A job that holds a training process until a file appears (tests of the event loop)."""

import os
import time


def hold_until(path: str, deadline_s: float = 30.0) -> bool:
    """Occupy this pool process until `path` exists (or the deadline passes)."""
    deadline = time.monotonic() + deadline_s
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def die() -> None:
    """End this pool process at once, as the OOM killer would."""
    os._exit(1)
