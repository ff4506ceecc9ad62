"""What every stage of `siamese run` shares: its progress line, and the timings and notes the report shows."""
from __future__ import annotations

import sys
import time


def say(message: str) -> None:
    print(f"\n== {message}", file=sys.stderr, flush=True)


class Stages:
    """Times each stage and collects what the report shows beside the figures."""

    def __init__(self):
        self.timings, self.extra = {}, {}

    def timed(self, name: str, fn, *args, **kwargs):
        started = time.time()
        result = fn(*args, **kwargs)
        self.timings[name] = time.time() - started
        return result
