"""What each stage of `siamese run` was made from, so that a run over an existing --out reuses a stage only
when this run would make the same thing.

``OUT/made_from.json`` holds, per stage, what it was made from (fingerprints of the files it read, the ids of
the artefacts of earlier stages it read, its settings) and the id of the artefact it made (the id
``common.atomic.atomic_dir`` writes into every artefact's marker). Before a stage, the run compares what the
stage would be made from now with that record:

- the same, and the artefact is the one recorded: reused;
- anything different: refused in one line naming each difference, or rebuilt under ``--force``;
- an artefact with no record (the user's own folder, a run of an older version): refused, or rebuilt under
  ``--force`` where siamese wrote it.

The record is written before the stage starts ("building") and completed after it. Artefacts appear whole or
not at all (write, then rename), so one that is there while its record says "building" was made by that build.
A stage that keeps work in progress (training's checkpoints)
resumes it only when it was started from the same.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from common.atomic import MARKER, artifact_id, artifact_kind
from common.errors import ConfigError, MissingInputError
from training.model_dir import TRAIN_CONFIG_FILE

RECORD = "made_from.json"


class StaleStageError(ConfigError):
    """An existing stage was made from other inputs or settings than this run asks for."""


def file_fingerprint(path) -> str:
    """sha256 of a file's bytes, or of a folder's files (names and bytes, in order; markers left out)."""
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"{path}: no such file or folder")
    digest = hashlib.sha256()
    files = (
        sorted(p for p in path.rglob("*") if p.is_file() and p.name != MARKER) if path.is_dir() else [path]
    )
    for f in files:
        digest.update(str(f.relative_to(path) if path.is_dir() else "").encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def made_by_run(artifact) -> str:
    """What a later stage records of an earlier stage's artefact:
    its id (a new one each time it is rebuilt)."""
    return f"artefact {artifact_id(artifact) or 'without id'}"


def _show(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def differences(was: dict, now: dict) -> list[str]:
    """Each setting or input that differs, as ``name: before → now``."""
    missing = object()
    return [
        f"{key.replace('_', ' ')}: {_show(was.get(key, 'unset'))} → {_show(now.get(key, 'unset'))}"
        for key in sorted(set(was) | set(now))
        if was.get(key, missing) != now.get(key, missing)
    ]


class MadeFrom:
    """``OUT/made_from.json``: each stage's inputs and settings, and the artefact they made."""

    def __init__(self, out, force: bool = False):
        self.out, self.force = Path(out), force
        self.path = self.out / RECORD
        try:
            self.stages = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):  # none yet, or unreadable: every existing stage is unrecorded
            self.stages = {}

    def _save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{RECORD}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(self.stages, indent=2) + "\n")
        os.replace(tmp, self.path)

    def reuse(self, stage: str, artifact, inputs: dict, work: tuple = ()) -> bool:
        """True where ``artifact`` is there and was made from ``inputs``: reuse it. False where the stage is
        to be built (nothing there, or removed under --force); the record now says it is building from
        ``inputs``, and ``done`` completes it. ``work``: folders of work in progress the stage resumes
        (training's checkpoints), judged like the artefact. Raises
        ``StaleStageError`` where anything differs."""
        artifact = Path(artifact)
        record = self.stages.get(stage)
        present = [p for p in (artifact, *map(Path, work)) if p.exists()]
        if present:
            if record is None or (
                artifact.exists() and record.get("artifact") not in (None, artifact_id(artifact))
            ):
                self._stale(
                    stage,
                    present,
                    [
                        f"{present[0]} has no record of what made it (made by hand, by another "
                        f"command or by an older version)"
                    ],
                )
            elif record["inputs"] != inputs:
                self._stale(stage, present, differences(record["inputs"], inputs))
            elif artifact.exists():
                if record.get("artifact") is None:  # made by the build the record names, then interrupted
                    self.done(stage, artifact)
                return True
        self.stages[stage] = {"inputs": inputs, "artifact": None}
        self._save()
        return False

    def judge(self, stage: str, artifact, inputs: dict) -> None:
        """Refuse early (before the stages that come first) an existing ``artifact`` whose record differs from
        ``inputs`` in any of their keys; under --force, ``reuse`` rebuilds it in its turn."""
        record = self.stages.get(stage)
        if self.force or not Path(artifact).exists():
            return
        if record is None:
            self._stale(stage, [Path(artifact)], [f"{artifact} has no record of what made it"])
        was = {k: record["inputs"].get(k) for k in inputs}
        if was != inputs:
            self._stale(stage, [Path(artifact)], differences(was, inputs))

    def done(self, stage: str, artifact) -> None:
        self.stages[stage]["artifact"] = artifact_id(artifact)
        self._save()

    def _stale(self, stage: str, present: list[Path], why: list[str]) -> None:
        if not self.force:
            raise StaleStageError(
                f"{stage}: {present[0]} was not made from what this run asks ({'; '.join(why)}). "
                "Run with --force to rebuild it (and what was made from it), or choose another --out."
            )
        for path in present:
            if artifact_kind(path) is None and not (path / TRAIN_CONFIG_FILE).exists():
                raise StaleStageError(
                    f"{stage}: {path} is not something siamese wrote; --force replaces only that. "
                    "Choose another --out."
                )
        for path in present:
            shutil.rmtree(path)
        self.stages.pop(stage, None)
