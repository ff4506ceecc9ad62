"""``torchrun ... tests/ddp_interrupt.py N ARGS...``: `python -m training ARGS` with Ctrl-C arriving at every
rank's N-th training step (``test_distributed.py``: a two-process run stopped, then resumed)."""

import sys

import training.loop as loop
from training.cli import main

real = loop.train_step
calls = []


def dying(*args, **kwargs):
    calls.append(1)
    if len(calls) == int(sys.argv[1]):
        raise KeyboardInterrupt
    return real(*args, **kwargs)


loop.train_step = dying
sys.exit(main(sys.argv[2:]))
