"""What the commands tell the user on stderr, and the strict-JSON metrics files they write.

stdout carries data only, so every progress line goes to stderr, at most once every few seconds, and
nothing at all with --quiet.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import IO, Any

from dnahnet_cli.genomics.fileio import atomic_output


class Progress:
    """Occasional "dnahnet: WHAT: done/total (N s)" lines on stderr; silent when quiet.

    Call it as `progress(done, total)` (the callback the tasks accept) or `progress.update(done)` when
    the total was given up front.
    """

    def __init__(self, what: str, total: int = 0, quiet: bool = False, every: float = 5.0):
        self.what, self.total, self.quiet, self.every = what, total, quiet, every
        self.start = self.last = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        self.total = total
        self.update(done)

    def update(self, done: int) -> None:
        now = time.monotonic()
        if not self.quiet and now - self.last >= self.every:
            self.last = now
            sys.stderr.write(f"dnahnet: {self.what}: {done}/{self.total} ({now - self.start:.0f} s)\n")

    def elapsed(self) -> float:
        return time.monotonic() - self.start


class RegionProgress:
    """Progress over genome regions in nucleotides, with the running rate: `progress(chrom, done, total)`.

    A line is printed every `every` seconds and at the end of each region.
    """

    def __init__(self, what: str, quiet: bool = False, every: float = 5.0):
        self.what, self.quiet, self.every = what, quiet, every
        self.start = self.last = time.monotonic()
        self.finished = 0  # bases of the regions already done

    def __call__(self, chrom: str, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.quiet and (now - self.last >= self.every or done >= total):
            self.last = now
            rate = (self.finished + done) / max(now - self.start, 1e-9)
            sys.stderr.write(f"dnahnet: {self.what}: {chrom} {done}/{total} nt ({rate:.0f} nt/s, "
                             f"{now - self.start:.0f} s)\n")
        if done >= total:
            self.finished += total


def json_safe(obj: Any) -> Any:
    """NaN/inf -> null, recursively, so metrics files are strict JSON that every parser accepts."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_json(path: str, payload: dict, indent: int = 2) -> None:
    """Write strict JSON atomically (a partial file never appears at `path`)."""
    with atomic_output(path, "w") as fh:
        write_json_to(fh, payload, indent)


def write_json_to(fh: IO[str], payload: dict, indent: int = 2) -> None:
    """Strict JSON (NaN and inf become null) on an open stream."""
    json.dump(json_safe(payload), fh, indent=indent, allow_nan=False)
    fh.write("\n")
