"""Hashing speed: the canonical content hash (with and without the NaN/inf scan) and the
streamed file sha256, against `sha256sum` on the same safetensors file (page cache warm).

    python benchmarks/bench_hashing.py [--mb 400] [--repeat 3] [--keep PATH]

Prints MB/s for each; the content hash should be close to `sha256sum` (coreutils may not
use the CPU's SHA extensions; `openssl dgst` does, like Python's hashlib).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from distil.checks.hashing import scan_weights  # noqa: E402
from distil.hub.local import _sha_cache, file_sha256  # noqa: E402


def build(path: Path, megabytes: int) -> None:
    """bf16 tensors of 32 MiB each (finite values), like the shards of a model."""
    g = torch.Generator().manual_seed(0)
    per = 16 * 1024 * 1024  # elements: 32 MiB of bf16
    n = max(1, megabytes * 1024 * 1024 // (2 * per))
    save_file({f"model.layers.{i}.weight": torch.randn(per, generator=g).to(torch.bfloat16) for i in range(n)}, str(path))


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", default=None, help="write the test file here instead of a temp dir")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.keep or Path(tmp) / "bench.safetensors")
        if not path.exists():
            build(path, args.mb)
        size = path.stat().st_size / 1e6
        subprocess.run(["sha256sum", str(path)], check=True, capture_output=True)  # warm the page cache

        def file_hash():
            _sha_cache.clear()
            file_sha256(path)

        rows = [
            ("sha256sum", lambda: subprocess.run(["sha256sum", str(path)], check=True, capture_output=True)),
        ]
        if shutil.which("openssl"):
            rows.append(
                ("openssl dgst -sha256", lambda: subprocess.run(["openssl", "dgst", "-sha256", str(path)], check=True, capture_output=True))
            )
        rows += [
            ("file_sha256 (local store)", file_hash),
            ("content hash", lambda: scan_weights([path], scan_nonfinite=False)),
            ("content hash + NaN/inf scan", lambda: scan_weights([path])),
        ]
        print(f"{size:,.0f} MB safetensors file, best of {args.repeat}")
        reference = None
        for name, fn in rows:
            seconds = best(fn, args.repeat)
            reference = reference or seconds
            print(f"  {name:30s} {seconds:6.3f} s  {size / seconds:8,.0f} MB/s  ({seconds / reference:4.2f}x sha256sum)")


if __name__ == "__main__":
    main()
