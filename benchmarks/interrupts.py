"""kill -9 and Ctrl-C inside every stage of `siamese run`, inside `siamese train` (each tower) and inside
`siamese app check` (Vespa's Java code), then the same command again. Prints one row per case:

    command × stage × signal → exit of the interrupted run, exit
    of the re-run, stages kept, what was left behind

What must hold: the re-run ends in exit 0; stages finished before the interruption are reused, never rebuilt
or taken stale (each artefact is the one OUT/made_from.json records); no scratch folder (``.X.tmp-*``, ``/tmp/
siamese-java-*``), lock or Java process is left. A tiny model (2 layers, 32 wide) on a slice of SciFact keeps
the whole matrix to a few minutes on 2 cores; what is measured
is the bookkeeping, which does not depend on size.

    python benchmarks/interrupts.py [--work DIR] [--json docs/interrupts.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from common.atomic import artifact_id  # noqa: E402
from common.lock import alive, lock_path  # noqa: E402

RUN_STAGES = {
    "train": "== train",
    "export": "== export to ONNX",
    "index": "== embedded index",
    "package (Java check)": "== Vespa application package",
    "evaluation": "== evaluate on",
}
ARTIFACTS = {"train": "train/model", "export": "export", "index": "index", "package": "app"}


def _interrupt(cmd: list[str], trigger: str, delay: float, sig: int, env: dict) -> tuple[int, str]:
    """Run ``cmd``; ``delay`` s after a stderr line holding ``trigger`` appears, send ``sig`` (SIGINT to the
    whole process group, as a terminal's Ctrl-C does; SIGKILL to the process). Returns (exit code, the last
    stage line seen before the signal)."""
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    seen, last = threading.Event(), {"stage": ""}

    def read():
        for line in proc.stderr:
            if line.startswith("== "):
                last["stage"] = line.strip()
            if trigger is not None and trigger in line:
                seen.set()

    threading.Thread(target=read, daemon=True).start()
    if trigger is not None:
        seen.wait(600)
    time.sleep(delay)
    at = last["stage"]
    if proc.poll() is None:
        if sig == signal.SIGINT:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGKILL)
    return proc.wait(), at


def _left_behind(out: Path, started: float) -> list[str]:
    left = [
        str(p.relative_to(out.parent))
        for p in [*out.parent.glob(f".{out.name}*.tmp-*"), *out.rglob("*.tmp-*")]
    ]
    left += [
        p.name for p in Path(tempfile.gettempdir()).glob("siamese-java-*") if p.stat().st_mtime >= started
    ]
    if lock_path(out).exists():
        left.append(lock_path(out).name)
    java = subprocess.run(["pgrep", "-f", "ai.siamese.verify"], capture_output=True, text=True).stdout.split()
    left += [f"java pid {pid}" for pid in java if alive(int(pid))]
    return left


def _stale(out: Path) -> list[str]:
    """Stages whose artefact is not the one the record says made it."""
    record = json.loads((out / "made_from.json").read_text()) if (out / "made_from.json").exists() else {}
    stages = {"train": "train/model", "export": "export", "index": "index", "package": "app"}
    return [
        s
        for s, path in stages.items()
        if (out / path).exists() and record.get(s, {}).get("artifact") != artifact_id(out / path)
    ]


def run_case(name, cmd, trigger, delay, sig, out: Path, env) -> dict:
    started = time.time()
    code, at = _interrupt(cmd, trigger, delay, sig, env)
    before = {s: artifact_id(out / p) for s, p in ARTIFACTS.items() if (out / p).exists()}
    again = subprocess.run(cmd, env=env, capture_output=True, text=True)
    resumed = again.returncode == 2 and "Use --resume" in again.stderr  # checkpoints kept: said, then resumed
    if resumed:
        again = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True)
    after = {s: artifact_id(out / p) for s, p in ARTIFACTS.items() if (out / p).exists()}
    row = {
        "case": name,
        "signal": "kill -9" if sig == signal.SIGKILL else "Ctrl-C",
        "stage at the signal": at,
        "interrupted exit": code,
        "re-run exit": again.returncode,
        "re-run with --resume": resumed,
        "kept": sorted(s for s in before if after.get(s) == before[s]),
        "rebuilt": sorted(s for s in before if after.get(s) != before[s]),
        "stale": _stale(out) if (out / "made_from.json").exists() else [],
        "left behind": _left_behind(out, started),
    }
    if again.returncode != 0:
        row["re-run error"] = again.stderr.strip().splitlines()[-1:]
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=None, help="where the runs go (default: a temporary folder)")
    parser.add_argument("--json", default=None, help="write the rows here too")
    args = parser.parse_args()

    from conftest import build_tiny_model, toy_pairs, write_small_beir

    work = Path(args.work or tempfile.mkdtemp(prefix="siamese-interrupts-"))
    work.mkdir(parents=True, exist_ok=True)
    model = build_tiny_model(work / "tiny")
    beir = write_small_beir(work / "beir")
    pairs = work / "pairs.jsonl"
    pairs.write_text(
        "".join(json.dumps({"query": p.query, "positive": p.positive}) + "\n" for p in toy_pairs(48))
    )
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", SIAMESE_CACHE=str(work / "cache"))
    siamese = [sys.executable, "-m", "siamese"]
    rows = []
    for sig in (signal.SIGKILL, signal.SIGINT):
        tag = "kill" if sig == signal.SIGKILL else "int"
        for stage, trigger in RUN_STAGES.items():
            out = work / f"run-{tag}-{stage.split()[0]}"
            cmd = siamese + [
                "run",
                "--data",
                str(beir),
                "--base",
                str(model),
                "--out",
                str(out),
                "--epochs",
                "1",
                "--no-sts",
                "--no-guards",
            ]
            rows.append(run_case(f"siamese run / {stage}", cmd, trigger, 0.3, sig, out, env))
        for tower in ("shared", "query", "adapter", "separate"):
            out = work / f"train-{tag}-{tower}"
            extra = ["--checkpoint-every", "4"] if tower == "shared" else []
            cmd = siamese + [
                "train",
                "--data",
                str(pairs),
                "--base",
                str(model),
                "--out",
                str(out),
                "--tower",
                tower,
                "--epochs",
                "40",
                "--batch-size",
                "4",
                "--anchor",
                "none",
                *extra,
            ]
            rows.append(run_case(f"siamese train --tower {tower}", cmd, "temperature", 1.5, sig, out, env))
        app = work / f"app-{tag}"
        if not app.exists():
            subprocess.run(
                siamese + ["app", "build", str(work / "run-kill-train" / "export"), str(app), "--no-check"],
                env=env,
                check=True,
                capture_output=True,
            )
        cmd = siamese + ["app", "check", str(app)]
        rows.append(run_case("siamese app check", cmd, None, 4.0, sig, app, env))
    bad = [r for r in rows if r["re-run exit"] != 0 or r["stale"] or r["left behind"]]
    print(f"\n{len(rows)} cases; {len(bad)} with a failed re-run, a stale stage or something left behind")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
