"""Write-then-rename for every artifact (model directories, checkpoints, exports, packages, indexes)."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def atomic_dir(final: Path, write) -> Path:
    """Run ``write(tmp_dir)`` and rename the result into place, so a crash never leaves a half-written
    directory that looks complete. An existing ``final`` is replaced only after the new one is whole."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        write(tmp)
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old)
        else:
            tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
