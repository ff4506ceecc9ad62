"""A `siamese run` output folder as the search page reads it, never writing into it: the report, its figures
query by query (``per_query.json``), the progress of a run still writing it, and the files it may serve.

A folder is a run when `siamese run` started in it (``made_from.json``); the page shows whatever of it is
there, and what is not yet there is said, not guessed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from common.errors import UserError

SERVED_FILES = {"plot.png": "image/png"}  # the only files of RUN the page hands out, by name


class NotARunError(UserError):
    """A folder that `siamese run` did not write."""


@dataclass
class RunFolder:
    path: Path

    @classmethod
    def open(cls, path) -> RunFolder:
        path = Path(path)
        if not path.is_dir():
            raise NotARunError(
                f"{path}: no such folder. Give a `siamese run` output folder (default runs/latest)"
            )
        if not (path / "made_from.json").exists() and not (path / "results.json").exists():
            raise NotARunError(
                f"{path}: not a `siamese run` folder (no made_from.json or results.json). "
                "Give the --out of a `siamese run` (default runs/latest)"
            )
        return cls(path.resolve())

    def _json(self, name: str):
        try:
            return json.loads((self.path / name).read_text())
        except (OSError, ValueError):
            return None

    @property
    def results(self) -> dict | None:
        return self._json("results.json")

    @property
    def per_query(self) -> dict | None:
        return self._json("per_query.json")

    @property
    def progress(self) -> dict | None:
        return self._json("progress.json")

    @property
    def report(self) -> str | None:
        path = self.path / "report.md"
        return path.read_text() if path.exists() else None

    @property
    def index(self) -> Path | None:
        return self.path / "index" if (self.path / "index" / "meta.json").exists() else None

    @property
    def export(self) -> Path | None:
        return self.path / "export" if (self.path / "export" / "manifest.json").exists() else None

    def served_file(self, name: str) -> tuple[Path, str] | None:
        """A file of the run the page may hand out: named in ``SERVED_FILES``, there, and inside the run."""
        if name not in SERVED_FILES:
            return None
        path = (self.path / name).resolve()
        if not path.is_file() or path.parent != self.path:
            return None
        return path, SERVED_FILES[name]
