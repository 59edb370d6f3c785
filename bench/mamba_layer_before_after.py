"""One stage-0 Mamba2 layer (d = 192, d_state 64, 8,192 nt, fp32, 1 thread): the code of an earlier commit
(default 18b10ff, unpacked outside the repository) against this tree, same weights, interleaved.

    python bench/mamba_layer_before_after.py --reps 7
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from cpu_fast_path import unpack  # noqa: E402

from dnahnet_cli.model.layers import Mamba2  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default="18b10ff")
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    root = unpack(args.before, Path("/tmp") / f"dnahnet-before-{args.before}") / "dnahnet_cli"
    spec = importlib.util.spec_from_file_location("before_pkg", root / "__init__.py", submodule_search_locations=[str(root)])
    pkg = importlib.util.module_from_spec(spec)
    sys.modules["before_pkg"] = pkg
    spec.loader.exec_module(pkg)
    old_layers = importlib.import_module("before_pkg.layers")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    new = Mamba2(192, d_state=64, headdim=64).eval()
    old = old_layers.Mamba2(192, d_state=64, headdim=64).eval()
    old.load_state_dict(new.state_dict())
    u, mask = torch.randn(1, 8192, 192), torch.ones(1, 8192, dtype=torch.bool)
    samples: dict[str, list[float]] = {"before": [], "after": []}
    with torch.inference_mode():
        diff = float((new(u, mask) - old(u, mask)).abs().max())
        for _ in range(args.reps):
            for name, layer in (("before", old), ("after", new)):
                t = time.perf_counter()
                layer(u, mask)
                samples[name].append(time.perf_counter() - t)
    ratio = statistics.median(a / b for a, b in zip(samples["before"], samples["after"]))
    print(f"Mamba2 layer: before {statistics.median(samples['before']) * 1e3:.1f} ms, after "
          f"{statistics.median(samples['after']) * 1e3:.1f} ms, {ratio:.2f}x; max |difference| {diff:.1e}")


if __name__ == "__main__":
    main()
