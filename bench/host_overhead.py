"""How much of a real command's wall time is spent outside the model: would overlapping the host-side work
(window preparation, batch assembly) with the model on another thread buy anything?

Runs real commands in this process with the model call (`LikelihoodEngine.forward` for scoring, the whole
optimiser step for training) timed, and reports, per command: wall time, time in the model, and the rest (file
parsing, window building, encoding, batch assembly, writing), which is the most an overlap could hide.

    python bench/host_overhead.py --threads 2 --out docs/results/host-overhead.json

Cases: `essentiality` (paper protocol) on every 30th E. coli K-12 gene; `eval dms` (all 1,367 IF1
substitutions, variant scoring through the same engine); 20 training steps of the shipped `cpu` configuration (4 x 2,048 nt) on the 32-genome corpus.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, environment  # noqa: E402
from essentiality_speed import gene_subset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


class Timer:
    """Wraps a method so that every call adds its duration to `seconds`."""

    def __init__(self, owner: type, name: str):
        self.owner, self.name, self.seconds, self.calls = owner, name, 0.0, 0
        self.original = getattr(owner, name)
        timer = self

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return timer.original(*args, **kwargs)
            finally:
                timer.seconds += time.perf_counter() - start
                timer.calls += 1

        setattr(owner, name, timed)

    def restore(self) -> None:
        setattr(self.owner, self.name, self.original)


def run_cli(argv: list[str]) -> float:
    from dnahnet_cli.cli import app

    start = time.perf_counter()
    code = app(argv, standalone_mode=False)
    if code:
        raise SystemExit(f"dnahnet {' '.join(argv)} exited with {code}")
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--every", type=int, default=30)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    from dnahnet_cli.tasks.engine import LikelihoodEngine
    from dnahnet_cli.train import trainer
    from dnahnet_cli.train.corpus import ShardedLoader

    tmp = Path(tempfile.mkdtemp(prefix="host-overhead-"))
    gff = DATA / "ecoli_k12" / "annot.gff.gz"
    common = ["--threads", str(args.threads)]
    cases = {
        "essentiality": ("forward", common + ["essentiality", str(DATA / "ecoli_k12" / "genome.fa.gz"), "--gff", str(gff),
                                              "--protocol", "paper", "--genes", ",".join(gene_subset(gff, args.every)),
                                              "--device", "cpu", "-q", "-o", str(tmp / "ess.tsv")]),
        "eval dms": ("forward", common + ["eval", "dms", "--genome", str(DATA / "ecoli_k12" / "genome.fa.gz"),
                                          "--gff", str(gff), "--gene", "infA", "--dms",
                                          str(DATA / "dms" / "IF1_ECOLI_Kelsic_2016" / "dms.csv"), "--device", "cpu",
                                          "-q", "-o", str(tmp / "dms.tsv")]),
        "train": ("step", common + ["train", "--config", str(ROOT / "docs/results/model_card/v2/train-cpu.toml"),
                                    "--preset", "cpu", "--data", str(DATA / "corpus" / "train"), "--val",
                                    str(DATA / "corpus" / "val"), "--out", str(tmp / "run"), "--steps",
                                    str(args.steps), "--eval-every", str(10 * args.steps), "--quiet"]),
    }
    results = {}
    for name, (what, argv) in cases.items():
        if name == "train":  # once untimed: builds the corpus token cache the timed run then reads
            run_cli(argv[:-1] + ["--steps", "1", "--out", str(tmp / "warm"), "--cache-dir", str(tmp / "cache"), "--quiet"])
            argv = argv + ["--cache-dir", str(tmp / "cache")]
        timer = Timer(LikelihoodEngine, "forward") if what == "forward" else Timer(trainer, "_step")
        batches = Timer(ShardedLoader, "micro_batches") if name == "train" else None
        try:
            wall = run_cli(argv)
        finally:
            timer.restore()
            if batches:
                batches.restore()
        results[name] = {"wall_s": wall, "model_s": timer.seconds, "model_calls": timer.calls,
                         "outside_model_s": wall - timer.seconds, "outside_fraction": 1 - timer.seconds / wall,
                         "timed": "LikelihoodEngine.forward" if what == "forward" else "trainer._step (forward, "
                                  "backward, optimiser; batch assembly is inside it)"}
        if batches:
            results[name]["batch_assembly_s"] = batches.seconds
        print(f"{name}: wall {wall:.1f} s, model {timer.seconds:.1f} s ({timer.calls} calls), outside "
              f"{wall - timer.seconds:.1f} s", file=sys.stderr)
    payload = {"command": "python bench/host_overhead.py " + " ".join(sys.argv[1:]), "environment": environment(),
               "cases": results}
    emit(payload, args.out)


if __name__ == "__main__":
    main()
