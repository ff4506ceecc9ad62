"""Write-then-rename for every artefact (model directories, checkpoints, exports, packages, indexes), and
the rules for replacing one.

Each artefact directory holds a marker, ``.siamese-artifact``, naming its kind and giving it an id of its own
(a later stage records the ids of what it was made from: ``siamese/run/made_from.py``). ``--force`` replaces
an output directory only when its marker says it is an artefact of the same kind, and never when it is,
contains or lies inside one of the command's inputs: no command deletes a directory it did not create.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import tempfile
import uuid
from pathlib import Path

from .errors import OutputExistsError
from .lock import alive

MARKER = ".siamese-artifact"


def artifact_kind(path) -> str | None:
    """The kind of artefact ``path`` holds, from its marker; None for anything else."""
    try:
        return json.loads((Path(path) / MARKER).read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


def artifact_id(path) -> str | None:
    """The id ``atomic_dir`` gave the artefact at ``path`` when it wrote it; None for anything else."""
    try:
        return json.loads((Path(path) / MARKER).read_text()).get("id")
    except (OSError, ValueError, AttributeError):
        return None


def _related(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def check_output(final, kind: str, replace: bool = False, inputs=()) -> None:
    """Fail, touching nothing, unless ``final`` is free or (with ``replace``) a previous ``kind`` artefact
    that is neither an input, nor inside one, nor holding one. Commands call this before any work."""
    final = Path(final)
    if not final.exists():
        return
    if not replace:
        raise OutputExistsError(
            f"{final} already exists. Choose another directory, or pass --force to replace a previous {kind}."
        )
    resolved = final.resolve()
    clash = next((Path(i) for i in inputs if _related(resolved, Path(i).resolve())), None)
    if clash is not None:
        raise OutputExistsError(
            f"{final} is, holds or lies inside the input {clash}; --force will not replace it. "
            "Choose another output directory."
        )
    found = artifact_kind(final)
    if found != kind:
        what = f"a {found}" if found else "not something siamese wrote"
        raise OutputExistsError(
            f"{final} is {what}, not a previous {kind}; --force replaces only that. Choose "
            "another output directory."
        )


def scratch_dir(parent, prefix: str) -> Path:
    """A new folder ``parent/PREFIX<host>-<pid>-<random>`` for one process's temporary work, after removing
    those of this prefix whose process died on this host without removing its own (kill -9, power loss)."""
    parent, host = Path(parent), socket.gethostname()
    for scratch in parent.glob(f"{glob.escape(prefix)}*"):
        try:
            writer, pid, _ = scratch.name[len(prefix) :].rsplit("-", 2)
            dead = writer == host and not alive(int(pid))
        except ValueError:
            continue  # not one of ours
        if dead:
            shutil.rmtree(scratch, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{host}-{os.getpid()}-", dir=parent))


def atomic_dir(final, write, kind: str, *, replace: bool = False, inputs=()) -> Path:
    """Run ``write(tmp_dir)`` and rename the result into place, so a crash never leaves a half-written
    directory that looks complete. An existing ``final`` is replaced (see ``check_output``) only after the
    new one is whole; a ``write`` that raises (a failed check) leaves nothing behind.

    ``tmp_dir`` already has ``final``'s name (tools such as Vespa's take an application's name from its
    directory) and, made by ``mkdir``, the user's umask."""
    final = Path(final)
    check_output(final, kind, replace, inputs)
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = scratch_dir(final.parent, f".{final.name}.tmp-")
    try:
        tmp = scratch / final.name
        tmp.mkdir()
        write(tmp)
        (tmp / MARKER).write_text(json.dumps({"kind": kind, "id": uuid.uuid4().hex}) + "\n")
        if not final.exists():
            tmp.rename(final)
            return final
        check_output(final, kind, replace, inputs)
        old = scratch / f"{final.name}.old"  # removed with the scratch directory once the new one is in place
        final.rename(old)
        try:
            tmp.rename(final)
        except BaseException:
            old.rename(final)
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return final
