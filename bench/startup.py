"""Start-up time of the CLI: wall-clock of whole `dnahnet` processes (median of --reps), one after another.

    python bench/startup.py --reps 5 --out docs/results/startup.json
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit  # noqa: E402

COMMANDS = [["--help"], ["--version"], ["score-variants", "--help"], ["presets"], ["info", "--device"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    exe = [sys.executable, "-m", "dnahnet_cli"]
    samples: dict[str, list[float]] = {" ".join(c): [] for c in COMMANDS}
    for _ in range(args.reps):
        for cmd in COMMANDS:
            t = time.perf_counter()
            subprocess.run(exe + cmd, capture_output=True, check=True)
            samples[" ".join(cmd)].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in samples.items()}
    for k, v in med.items():
        print(f"dnahnet {k:24s} {v:.2f} s", file=sys.stderr)
    payload = {"command": " ".join(["python"] + sys.argv), "python": platform.python_version(),
               "machine": platform.machine(), "median_s": med, "samples_s": samples}
    emit(payload, args.out)


if __name__ == "__main__":
    main()
