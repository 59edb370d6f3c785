"""CPU peak memory of a scoring forward, measured in a fresh subprocess per variant.

torch has no CPU allocator statistics, so the resident-set high-water mark (VmHWM) is reset through
/proc/self/clear_refs before each forward and read after it. The subprocess fixes glibc's mmap threshold
so freed activations go back to the OS between lengths (otherwise reused heap would hide the peak); the
timed process keeps the default allocator.

    python bench/memory.py '{"name": "small-tpp", "preset": "small-tpp", "router": null, "role": "tpp"}' 1024 2048
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def _status_kib(key: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def measure(spec: dict, lengths: list[int], fasta: str | None = None) -> dict[int, dict]:
    from variants import build, make_ids

    torch.set_num_threads(1)
    model = build(spec, torch.device("cpu"))
    with torch.inference_mode():  # first-call allocations (oneDNN/MKL buffers) are not the forward's cost
        model(make_ids(min(lengths), torch.device("cpu"), fasta))
    out = {}
    for length in lengths:
        ids = make_ids(length, torch.device("cpu"), fasta)
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM to the current RSS
        before = _status_kib("VmRSS")
        with torch.inference_mode():
            model(ids)
        out[length] = {"peak_rss_mib": _status_kib("VmHWM") / 1024, "forward_mib": (_status_kib("VmHWM") - before) / 1024}
    return out


def cpu_peak_memory(spec: dict, lengths: list[int], fasta: str | None = None, timeout: float = 3600) -> dict:
    """Run `measure` in a fresh interpreter; {length: {...}} or {"error": ...}."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(HERE / "memory.py"), json.dumps(spec), *map(str, lengths)] + (["--fasta", fasta] if fasta else [])
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, check=True)
        return {int(k): v for k, v in json.loads(res.stdout.strip().splitlines()[-1]).items()}
    except (subprocess.SubprocessError, ValueError, IndexError) as exc:
        return {"error": f"{type(exc).__name__}: {getattr(exc, 'stderr', '') or exc}"[-500:]}


def main() -> None:
    import argparse

    doc = __doc__ or "CPU peak memory of a scoring forward.\n\n"  # python -OO strips docstrings
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0], epilog=doc.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", help="variant as JSON (bench/variants.py: name, preset, router, role)")
    parser.add_argument("lengths", type=int, nargs="+", help="sequence lengths (nt), one forward each")
    parser.add_argument("--fasta", help="take the bases from the start of this FASTA (default: random bases)")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(HERE.parent))
    print(json.dumps(measure(json.loads(args.spec), args.lengths, args.fasta)))


if __name__ == "__main__":
    main()
