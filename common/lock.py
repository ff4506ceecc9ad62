"""One writer per output directory.

Two commands writing one output (two ``siamese train --out R`` at once) would each half-overwrite the other.
Every command that writes an output takes ``output_lock(OUT)`` first: a file beside OUT, ``.OUT.lock``,
created exclusively, naming the process (pid, host, command, start time). A second writer gets one line
naming the first. A lock left by a process that is gone (same host, pid not running) is stale and taken over.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError


class OutputBusyError(UserError):
    """Another process is writing the same output."""


def lock_path(out) -> Path:
    out = Path(out).absolute()
    return out.parent / f".{out.name}.lock"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@contextmanager
def output_lock(out, command: str = ""):
    """Hold OUT's lock for the block; re-entrant within one process (a run that trains holds both)."""
    path = lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command or " ".join(sys.argv[:2]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if holder and holder.get("pid") == me["pid"] and holder.get("host") == me["host"]:
                yield path  # this process holds it already
                return
            # unreadable: being written this instant (wait), or left half-written long ago (stale)
            try:
                half_written = holder is None and time.time() - path.stat().st_mtime > 5
            except FileNotFoundError:  # its writer finished in between
                continue
            if holder is None and not half_written:
                time.sleep(0.2)
                continue
            if half_written or (holder.get("host") == me["host"] and not alive(int(holder.get("pid", 0)))):
                path.unlink(missing_ok=True)  # stale: its writer is gone
                continue
            raise OutputBusyError(
                f"{out} is being written by `{holder.get('command')}` (pid {holder.get('pid')} on "
                f"{holder.get('host')}, since {holder.get('started')}). Wait for it to finish, or choose "
                f"another output. If that process is gone, delete {path}."
            ) from None
        with os.fdopen(fd, "w") as fh:
            json.dump(me, fh)
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)
        return
    raise OutputBusyError(f"{out}: could not take the lock {path}; delete it if no other command is running")


def locks(command: str, output):
    """Decorator: the function holds the lock of its output while it runs; ``output(arguments)`` picks the
    output path from the call's bound arguments (by parameter name)."""
    import functools
    import inspect

    def wrap(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def locked(*args, **kwargs):
            if os.environ.get("RANK", "0") != "0":  # a torchrun job's other ranks: rank 0 writes and holds it
                return fn(*args, **kwargs)
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            with output_lock(output(bound.arguments), command):
                return fn(*args, **kwargs)

        return locked

    return wrap
