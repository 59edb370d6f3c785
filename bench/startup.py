"""Start-up time of the CLI: wall-clock of whole `dnahnet` processes (median of --reps), one after another,
and for the scoring commands the time from start to their first stderr line (the model line), on the shipped
examples with the shipped default model.

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
EX = Path(__file__).resolve().parents[1] / "examples"
FIRST_LINE = {  # scoring commands: seconds until the first line on stderr
    "score-variants": ["score-variants", str(EX / "ecoli_k12_20kb.fa"), str(EX / "ecoli_k12_20kb.vcf"), "-o", "-"],
    "essentiality": ["essentiality", str(EX / "ecoli_k12_20kb.fa"), "--gff", str(EX / "ecoli_k12_20kb.gff3"),
                     "-o", "-"],
    "segment": ["segment", str(EX / "ecoli_k12_20kb.fa"), "-o", "-"],
}


def first_line_s(cmd: list[str]) -> float:
    """Seconds from process start to its first stderr line; the process is then stopped."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    proc.stderr.readline()
    elapsed = time.perf_counter() - t
    proc.kill()
    proc.wait()
    return elapsed


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
        for name, cmd in FIRST_LINE.items():
            samples.setdefault(f"{name}: first stderr line", []).append(first_line_s(exe + cmd))
    med = {k: statistics.median(v) for k, v in samples.items()}
    for k, v in med.items():
        print(f"dnahnet {k:36s} {v:.2f} s", file=sys.stderr)
    payload = {"command": " ".join(["python"] + sys.argv), "python": platform.python_version(),
               "machine": platform.machine(), "median_s": med, "samples_s": samples}
    emit(payload, args.out)


if __name__ == "__main__":
    main()
