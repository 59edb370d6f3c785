"""Score calibration: where a variant's score falls among random SNVs of the same genome.

A raw log-likelihood ratio means little on its own (how negative is "damaging" depends on the model, the
window and the genome), so `score-variants --calibrate N` scores a background of N random SNVs, seeded and
spread uniformly over the A/C/G/T positions of the reference, with exactly the windows, strands and model of
the run, and reports for each variant

* `score_percentile`: 100 x the fraction of background scores <= its score (low = more damaging than most
  random SNVs; 1 = as low as the lowest 1%), and
* `score_z`: (score - background mean) / background standard deviation.

The background costs as much as scoring N SNVs, so it is cached as a TSV under the cache directory, keyed by
the reference's sequences (names, lengths and bases), the model's sha256 and precision, the window, the
strands, N and the seed; a later run with the same key reads it back instead of rescoring.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.genomics.genome import Genome
from dnahnet_cli.genomics.outputs import TsvWriter, open_output
from dnahnet_cli.genomics.variants import OK, SKIP_TOO_LONG, Allele, make_windows

BACKGROUND_COLUMNS = ["chrom", "pos", "ref", "alt", "score"]
_BASES = "ACGT"
_BASE_SET = frozenset(_BASES)
_DIGEST_CHUNK = 1 << 22
_SCORE_CHUNK = 128  # background SNVs per scoring call (progress granularity)


def default_cache_dir() -> Path:
    """$DNAHNET_CACHE_DIR, else $XDG_CACHE_HOME/dnahnet, else ~/.cache/dnahnet."""
    if os.environ.get("DNAHNET_CACHE_DIR"):
        return Path(os.environ["DNAHNET_CACHE_DIR"])
    home = os.path.expanduser("~")
    if not os.environ.get("XDG_CACHE_HOME") and home == "~":  # no HOME and no passwd entry (a container's --user)
        raise DnahnetError("--calibrate: no home directory to cache the background in; set DNAHNET_CACHE_DIR or "
                           "give --calibrate-cache DIR")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache")
    return Path(base) / "dnahnet"


def default_cache_source() -> str:
    """Where default_cache_dir() came from, for an error message that names what the user set."""
    if os.environ.get("DNAHNET_CACHE_DIR"):
        return "DNAHNET_CACHE_DIR"
    return "XDG_CACHE_HOME" if os.environ.get("XDG_CACHE_HOME") else "the default cache folder"


def prepare_cache_dir(cache_dir: Path, option: str = "--calibrate-cache") -> Path:
    """The folder backgrounds are cached in, created now (before any work) or a one-line error."""
    folder = cache_dir / "calibration"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DnahnetError(f"{option} {cache_dir}: cannot create {folder} ({exc.strerror})") from None
    if not os.access(folder, os.R_OK | os.X_OK):
        raise DnahnetError(f"{option} {cache_dir}: {folder} is not readable")
    return cache_dir  # a read-only cache still serves the backgrounds it holds (a shared one filled by a first job)


def default_cache_or_none(note: Callable[[str], None]) -> Optional[Path]:
    """The default cache folder, ready; None when the user chose none and the default cannot be used (no home, a
    read-only home on a cluster): the background is then scored for this run and not cached, as with a read-only
    cache. A DNAHNET_CACHE_DIR that cannot be used is an error: the user asked for it."""
    source = default_cache_source()
    try:
        return prepare_cache_dir(default_cache_dir(), source)
    except DnahnetError as exc:
        if source == "DNAHNET_CACHE_DIR":
            raise
        note(f"calibration: {exc}; the background is scored for this run, not cached (DNAHNET_CACHE_DIR or "
             "--calibrate-cache keeps it)")
        return None


def genome_digest(genome: Genome) -> str:
    """sha256 of every record's name, length and upper-cased bases: the same sequences give the same key
    whatever the file is called or how it is compressed."""
    h = hashlib.sha256()
    for name in genome.names:
        n = genome.length(name)
        h.update(f">{name}\t{n}\n".encode())
        for start in range(0, n, _DIGEST_CHUNK):
            h.update(genome.fetch(name, start, min(n, start + _DIGEST_CHUNK)).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class Background:
    """Sorted background scores and what they were made with."""

    scores: np.ndarray
    params: dict[str, Any]
    path: Optional[Path]

    @cached_property  # computed once: z() runs for every variant
    def mean(self) -> float:
        return float(self.scores.mean())

    @cached_property
    def sd(self) -> float:
        return float(self.scores.std(ddof=1)) if len(self.scores) > 1 else math.nan

    def percentile(self, score: Optional[float]) -> Optional[float]:
        if score is None or not math.isfinite(score):
            return None
        return 100.0 * np.searchsorted(self.scores, score, side="right") / len(self.scores)

    def z(self, score: Optional[float]) -> Optional[float]:
        if score is None or not math.isfinite(score) or not self.sd > 0:
            return None
        return (score - self.mean) / self.sd

    def describe(self) -> str:
        p = self.params
        return (f"{len(self.scores)} random SNVs (seed {p['seed']}) of the reference, same model, window and "
                f"strands; mean {self.mean:.4g}, sd {self.sd:.4g}; score_percentile = % of background scores "
                f"<= score (low = more damaging than most random SNVs), score_z = (score - mean) / sd; "
                f"background {self.path or 'not cached (read-only or no cache folder)'}")


def sample_snvs(genome: Genome, n: int, seed: int, window: int) -> list[Allele]:
    """n random SNVs at A/C/G/T reference bases, uniform over the genome's length, ALT uniform among the
    other three bases; sorted by record order and position. Deterministic for a seed."""
    total = sum(genome.lengths[c] for c in genome.names)
    if total == 0:
        raise DnahnetError(f"{genome.path}: empty reference; nothing to calibrate against")
    offsets = np.cumsum([0] + [genome.lengths[c] for c in genome.names])
    rng = np.random.default_rng(seed)
    picked: dict[tuple[int, int], str] = {}
    for _ in range(100):
        for g in rng.integers(0, total, size=2 * n):
            ci = int(np.searchsorted(offsets, g, side="right") - 1)
            pos0 = int(g - offsets[ci])
            ref = genome.fetch(genome.names[ci], pos0, pos0 + 1)
            if ref in _BASE_SET and (ci, pos0) not in picked:
                picked[(ci, pos0)] = ref
            if len(picked) == n:
                break
        if len(picked) == n:
            break
    else:
        raise DnahnetError(f"{genome.path}: too few A/C/G/T bases for {n} background SNVs")
    alleles = []
    for (ci, pos0), ref in sorted(picked.items()):
        contig = genome.names[ci]
        alt = _BASES.replace(ref, "")[int(rng.integers(0, 3))]
        windows = make_windows(genome, contig, pos0, pos0 + 1, alt, window)
        status = OK if windows is not None else SKIP_TOO_LONG
        alleles.append(Allele(0, contig, pos0 + 1, ".", ref, alt, 1, "snv", status, contig, pos0, pos0 + 1, alt,
                              windows))
    return alleles


def background_params(genome: Genome, engine: Any, window: int, strand: str, n: int, seed: int) -> dict[str, Any]:
    """What the background's scores depend on, and so the cache key: the weights and the architecture (an edited
    config.json changes every score), the precision with the device and kernels that ran it and the version,
    and which contigs are circular (where windows near contig ends, and on plasmids shorter than the window, go)."""
    prov = engine.provenance
    return {"genome_sha256": genome_digest(genome), "model_sha256": prov.get("sha256", "NA"),
            "config_sha256": prov.get("config_sha256", "NA"), "precision": engine.dtype,
            "device": str(prov.get("device", "NA")).split(":")[0], "kernels": prov.get("kernels", "NA"),
            "dnahnet_version": prov.get("dnahnet_version", "NA"), "window": window, "strand": strand, "n": n,
            "seed": seed, "circular": ",".join(sorted(genome.circular)) or "none"}


def _cache_path(cache_dir: Path, params: dict[str, Any]) -> Path:
    key = hashlib.sha256(repr(sorted(params.items())).encode()).hexdigest()[:20]
    return cache_dir / "calibration" / f"background-{key}.tsv"


def _read_cached(path: Path, params: dict[str, Any]) -> Optional[np.ndarray]:
    """Scores of a cached background whose header matches `params`, else None (rebuilt, never trusted)."""
    want = {f"dnahnet_background_{k}": str(v) for k, v in params.items()}
    seen: dict[str, str] = {}
    scores: list[float] = []
    rows = 0
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("##"):
                    key, _, value = line[2:].rstrip("\n").partition("=")
                    seen[key] = value
                elif not line.startswith("#") and line.strip():
                    rows += 1
                    cell = line.rstrip("\n").split("\t")[BACKGROUND_COLUMNS.index("score")]
                    if cell != "NA":
                        scores.append(float(cell))
    except (OSError, ValueError, IndexError, UnicodeDecodeError):
        return None
    # one row per sampled SNV: a file cut short (by hand; the cache itself is written atomically) is rebuilt
    if any(seen.get(k) != v for k, v in want.items()) or len(scores) < 2 or rows != params["n"]:
        return None
    return np.sort(np.array(scores, dtype=np.float64))


def load_or_build(genome: Genome, engine: Any, score: Callable[[list[Allele]], list[dict]], window: int,
                  strand: str, n: int, seed: int, cache_dir: Optional[Path],
                  note: Callable[[str], None] = lambda _: None,
                  progress: Optional[Callable[[int], None]] = None) -> Background:
    """The cached background for these settings, or a new one scored with `score` (and cached, when cache_dir is
    a folder that can be written)."""
    if n < 2:
        raise DnahnetError(f"--calibrate must be >= 2 background SNVs, not {n}")
    params = background_params(genome, engine, window, strand, n, seed)
    path = _cache_path(cache_dir, params) if cache_dir is not None else None
    cached = _read_cached(path, params) if path is not None and path.exists() else None
    if cached is not None:
        note(f"calibration: reusing the background of {len(cached)} SNVs in {path}")
        return Background(cached, params, path)
    note(f"calibration: scoring {n} background SNVs" + (f" (cached in {path} for later runs)" if path else ""))
    alleles, rows = sample_snvs(genome, n, seed, window), []
    for start in range(0, n, _SCORE_CHUNK):
        rows += score(alleles[start : start + _SCORE_CHUNK])
        if progress:
            progress(len(rows))
    scores = np.sort(np.array([r["score"] for r in rows if r.get("score") is not None], dtype=np.float64))
    if len(scores) < 2:
        raise DnahnetError(f"calibration: only {len(scores)} of {n} background SNVs could be scored")
    if path is None:
        return Background(scores, params, None)
    if not os.access(path.parent, os.W_OK):
        note(f"calibration: {path.parent} is read-only: the background is used for this run, not cached")
        return Background(scores, params, None)
    meta = [(f"dnahnet_background_{k}", str(v)) for k, v in params.items()]
    with open_output(str(path)) as fh:
        writer = TsvWriter(fh, BACKGROUND_COLUMNS, meta, float_fmt=".17g")  # exact round trip
        for r in rows:
            writer.write({k: r.get(k) for k in BACKGROUND_COLUMNS})
    return Background(scores, params, path)
