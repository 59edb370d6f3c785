"""How dnaHNet's boundaries line up with a genome annotation: `dnahnet segment --report/--plot`.

Each base of the segmented regions gets GFF classes (CDS codon positions in the gene's frame, start/stop
codons, upstream windows, intergenic, RNA genes, antisense CDS); boundary rates per class are compared with a
circular-shift permutation null, which keeps the boundaries' spacing (chunk lengths) and breaks only their
alignment with the annotation; and a profile of boundary rates around CDS starts is drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np

from dnahnet_cli.genomics.alphabet import reverse_complement
from dnahnet_cli.genomics.gff import OK, Annotation, Gene, stop_codons
from dnahnet_cli.tasks.segment import ChunkStream, Region, SegmentOptions, boundary_mask

# ---------------------------------------------------------------------------------------------------------
# Annotation classes


CLASSES: list[tuple[str, str]] = [
    ("all", "every position of the region"),
    ("cds", "CDS bases of genes on the strand read"),
    ("cds_codon1", "CDS codon position 1 (gene frame from the GFF phase and strand)"),
    ("cds_codon2", "CDS codon position 2"),
    ("cds_codon3", "CDS codon position 3"),
    ("start_codon", "the 3 bases of the first full codon of a CDS"),
    ("stop_codon", "the 3 bases of the stop codon (last CDS codon, or the codon after a CDS that omits it)"),
    ("upstream", "bases within --upstream nt 5' of a CDS start, outside every CDS (promoter/RBS)"),
    ("intergenic", "bases outside every annotated gene, pseudogene and CDS on either strand"),
    ("rna_gene", "bases of tRNA/rRNA/ncRNA genes on the strand read"),
    ("cds_antisense", "CDS bases of genes on the other strand only"),
]
CLASS_NAMES = [c for c, _ in CLASSES]
BIT = {c: np.uint16(1 << i) for i, c in enumerate(CLASS_NAMES)}


def _cds_positions(g: Gene) -> tuple[np.ndarray, np.ndarray]:
    """Unwrapped genome position and codon position (1-3; 0 for leading phase bases) of every CDS base,
    in transcription order."""
    parts = [np.arange(s.start0, s.end) if g.strand == "+" else np.arange(s.end - 1, s.start0 - 1, -1)
             for s in g.cds]
    pos = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    cpos = np.zeros(len(pos), dtype=np.int8)
    starts = np.asarray(g.codon_starts(), dtype=np.int64)
    if starts.size:
        cpos[starts[:, None] + np.arange(3)] = np.arange(1, 4, dtype=np.int8)
    return pos, cpos


def _codon(genome, chrom: str, positions: np.ndarray, strand: str, n: int, circular: bool) -> str:
    """The bases at 3 consecutive positions (transcription order), '' when off a linear contig."""
    lo, hi = int(positions.min()), int(positions.max()) + 1
    if not circular and (lo < 0 or hi > n):
        return ""
    seq = genome.fetch(chrom, lo, hi)  # wraps across the origin of a circular contig
    return reverse_complement(seq) if strand == "-" else seq


@dataclass
class GeneSites:
    """Per sense gene: start-codon position and direction, for the start profile."""

    starts: list[int] = field(default_factory=list)
    directions: list[int] = field(default_factory=list)


def class_codes(annotation: Annotation, genome, region: Region, strand: str, upstream: int,
                circular: bool) -> tuple[np.ndarray, GeneSites]:
    """A bit set of CLASSES for every base of the region, read on `strand`, and the sense CDS starts."""
    chrom, a, L = region.chrom, region.start0, region.length
    n = genome.length(chrom)
    genes = [g for g in annotation.genes if g.seqid == chrom]
    codes = np.zeros(L, dtype=np.uint16)

    def mark(positions: np.ndarray, bit: str, into: Optional[np.ndarray] = None) -> None:
        x = positions % n if circular else positions[(positions >= 0) & (positions < n)]
        x = x[(x >= a) & (x < region.end)] - a
        if into is not None:
            into[x] = True
        else:
            codes[x] |= BIT[bit]

    genic = np.zeros(L, dtype=bool)
    any_cds = np.zeros(L, dtype=bool)
    sense_cds = np.zeros(L, dtype=bool)
    anti_cds = np.zeros(L, dtype=bool)
    sites = GeneSites()
    for g in genes:
        mark(np.arange(g.start0, g.end), "", genic)
        if not g.cds:
            if g.strand == strand and not g.pseudo and g.biotype != "protein_coding":
                mark(np.arange(g.start0, g.end), "rna_gene")
            continue
        pos, cpos = _cds_positions(g)
        mark(pos, "", genic)
        mark(pos, "", any_cds)
        if g.strand not in "+-":  # unknown strand: genic, but neither sense nor antisense on either strand
            continue
        if g.strand != strand:
            mark(pos, "", anti_cds)
            continue
        mark(pos, "", sense_cds)
        if g.status != OK:
            continue
        for k in (1, 2, 3):
            mark(pos[cpos == k], f"cds_codon{k}")
        first = np.flatnonzero(cpos == 1)
        if not first.size:
            continue
        direction = 1 if strand == "+" else -1
        start, last = pos[first[0]], first[-1]
        sites.starts.append(int(start))
        sites.directions.append(direction)
        mark(pos[first[0]: first[0] + 3], "start_codon")
        stops = stop_codons(g.transl_table)
        stop = pos[last: last + 3]
        if _codon(genome, chrom, stop, strand, n, circular) not in stops:
            after = pos[-1] + direction * np.arange(1, 4)  # a CDS given without its stop codon
            in_frame = last + 3 == len(pos)
            stop = after if in_frame and _codon(genome, chrom, after, strand, n, circular) in stops else stop[:0]
        mark(stop, "stop_codon")
        mark(start - direction * np.arange(1, upstream + 1), "upstream")
    codes[sense_cds] |= BIT["cds"]
    codes[anti_cds & ~sense_cds] |= BIT["cds_antisense"]
    codes[any_cds] &= ~BIT["upstream"]
    codes[~genic] |= BIT["intergenic"]
    codes |= BIT["all"]
    return codes, sites


# ---------------------------------------------------------------------------------------------------------
# Report: boundary rates by class, permutation null, chunk lengths, start-codon profile


_BITMATRIX = ((np.arange(1 << len(CLASSES))[:, None] >> np.arange(len(CLASSES))) & 1).astype(np.int64)


def class_counts(codes: np.ndarray) -> np.ndarray:
    """How many of the given class codes carry each class bit."""
    return np.bincount(codes, minlength=1 << len(CLASSES)) @ _BITMATRIX


@dataclass
class StreamStats:
    """Accumulated over regions for one (strand, stage)."""

    n_pos: np.ndarray
    observed: np.ndarray
    null: np.ndarray  # (permutations, classes)
    lengths: list[np.ndarray] = field(default_factory=list)
    length_codes: list[np.ndarray] = field(default_factory=list)
    profile_pos: Optional[np.ndarray] = None
    profile_hits: Optional[np.ndarray] = None

    @classmethod
    def new(cls, permutations: int, width: int) -> "StreamStats":
        k = len(CLASSES)
        return cls(np.zeros(k, np.int64), np.zeros(k, np.int64), np.zeros((permutations, k), np.int64),
                   profile_pos=np.zeros(width, np.int64), profile_hits=np.zeros(width, np.int64))

    def merged(self, other: "StreamStats") -> "StreamStats":
        return StreamStats(self.n_pos + other.n_pos, self.observed + other.observed, self.null + other.null,
                           self.lengths + other.lengths, self.length_codes + other.length_codes,
                           self.profile_pos + other.profile_pos, self.profile_hits + other.profile_hits)


class Report:
    """Collects per-region statistics and renders the TSV rows, JSON payload and plot."""

    def __init__(self, opts: SegmentOptions):
        self.opts = opts
        self.rng = np.random.default_rng(opts.seed)
        self.distances = np.arange(-opts.upstream, opts.upstream + 1)
        width = len(self.distances)
        self.stats: dict[tuple[str, int], StreamStats] = {
            (st, s): StreamStats.new(opts.permutations, width) for st in opts.strands for s in opts.stages}

    def add_region(self, annotation: Annotation, genome, region: Region, tracks: Mapping[str, list[np.ndarray]],
                   streams: Mapping[tuple[str, int], ChunkStream], circular: bool) -> None:
        L = region.length
        n_perm = self.opts.permutations
        shifts = self.rng.integers(1, L, size=n_perm) if L > 1 else np.zeros(n_perm, dtype=np.int64)
        n = genome.length(region.chrom)
        for st in self.opts.strands:
            codes, sites = class_codes(annotation, genome, region, st, self.opts.upstream, circular)
            # start profile: positions at each distance from every sense start codon
            starts = np.asarray(sites.starts, dtype=np.int64)[:, None]
            dirs = np.asarray(sites.directions, dtype=np.int64)[:, None]
            x = starts + dirs * self.distances[None, :]
            if circular:
                x = x % n
            inside = (x >= region.start0) & (x < region.end)
            for s in self.opts.stages:
                stats = self.stats[(st, s)]
                bnd = boundary_mask(tracks[st], s, 0, L)
                pos = np.flatnonzero(bnd)
                stats.n_pos += class_counts(codes)
                stats.observed += class_counts(codes[pos])
                for i, shift in enumerate(shifts):
                    stats.null[i] += class_counts(codes[(pos + shift) % L])
                done = streams[(st, s)].done
                five = np.concatenate([f for f, _ in done]) if done else np.zeros(0, dtype=np.int64)
                stats.lengths.append(np.concatenate([n for _, n in done]) if done else np.zeros(0, np.int32))
                stats.length_codes.append(codes[five - region.start0])
                stats.profile_pos += inside.sum(0)
                hits = np.zeros_like(inside)
                hits[inside] = bnd[x[inside] - region.start0]
                stats.profile_hits += hits.sum(0)

    def pooled(self) -> dict[tuple[str, int], StreamStats]:
        out = dict(self.stats)
        if len(self.opts.strands) == 2:
            for s in self.opts.stages:
                out[("both", s)] = self.stats[("+", s)].merged(self.stats[("-", s)])
        return out

    def rows(self) -> list[dict]:
        rows = []
        strands = self.opts.strands + (["both"] if len(self.opts.strands) == 2 else [])
        pooled = self.pooled()
        n_perm = self.opts.permutations
        for s in self.opts.stages:
            for st in strands:
                stats = pooled[(st, s)]
                lengths = np.concatenate(stats.lengths) if stats.lengths else np.zeros(0, np.int64)
                lcodes = np.concatenate(stats.length_codes) if stats.length_codes else np.zeros(0, np.uint16)
                for k, cls in enumerate(CLASS_NAMES):
                    n_pos, obs = int(stats.n_pos[k]), int(stats.observed[k])
                    expected = float(stats.null[:, k].mean()) if n_perm else math.nan
                    ls = lengths[(lcodes & BIT[cls]) != 0]
                    q = np.quantile(ls, [0.1, 0.25, 0.5, 0.75, 0.9]) if ls.size else [math.nan] * 5
                    rows.append({
                        "stage": s, "strand": st, "class": cls, "n_positions": n_pos, "n_boundaries": obs,
                        "boundary_rate": obs / n_pos if n_pos else math.nan,
                        "expected_boundaries": expected,
                        "expected_rate": expected / n_pos if n_pos and n_perm else math.nan,
                        "obs_exp": obs / expected if n_perm and expected > 0 else math.nan,
                        "p_enriched": (1 + int((stats.null[:, k] >= obs).sum())) / (n_perm + 1) if n_perm else math.nan,
                        "p_depleted": (1 + int((stats.null[:, k] <= obs).sum())) / (n_perm + 1) if n_perm else math.nan,
                        "n_chunks": int(ls.size), "chunk_len_mean": float(ls.mean()) if ls.size else math.nan,
                        "chunk_len_q10": float(q[0]), "chunk_len_q25": float(q[1]), "chunk_len_median": float(q[2]),
                        "chunk_len_q75": float(q[3]), "chunk_len_q90": float(q[4]),
                    })
        return rows

    def start_profile(self) -> dict:
        """Boundary rate at each distance (nt, gene direction) from the first base of sense start codons."""
        out: dict = {"distance": self.distances.tolist()}
        for (st, s), stats in self.pooled().items():
            with np.errstate(invalid="ignore", divide="ignore"):
                rate = stats.profile_hits / stats.profile_pos
            out[f"stage{s}:{st}"] = [None if not math.isfinite(v) else float(v) for v in rate]
        return out


REPORT_COLUMNS = ["stage", "strand", "class", "n_positions", "n_boundaries", "boundary_rate", "expected_boundaries",
                  "expected_rate", "obs_exp", "p_enriched", "p_depleted", "n_chunks", "chunk_len_mean",
                  "chunk_len_q10", "chunk_len_q25", "chunk_len_median", "chunk_len_q75", "chunk_len_q90"]


def headline(rows: Sequence[dict], strand: str) -> list[str]:
    """One-line summaries for stderr: codon-position rates and non-coding vs CDS rates per stage."""
    by = {(r["stage"], r["strand"], r["class"]): r for r in rows}
    lines = []
    for s in sorted({r["stage"] for r in rows}):
        get = lambda c: by.get((s, strand, c), {}).get("boundary_rate", math.nan)  # noqa: E731
        lines.append(f"stage {s} ({strand}): boundary rate codon1/2/3 = {get('cds_codon1'):.4f}/"
                     f"{get('cds_codon2'):.4f}/{get('cds_codon3'):.4f}; intergenic {get('intergenic'):.4f}, "
                     f"upstream {get('upstream'):.4f}, CDS {get('cds'):.4f}, all {get('all'):.4f}")
    return lines


def plot_report(path_tmp: str, rows: Sequence[dict], profile: Mapping, strand: str, fmt: str = "png",
                region: str = "") -> None:
    """Boundary rate by codon position per stage (bars) and around CDS starts (lines), Agg backend; `region`
    (the --region given, if any) goes into the title, so a figure of part of a genome says so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = sorted({r["stage"] for r in rows})
    by = {(r["stage"], r["strand"], r["class"]): r for r in rows}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / max(1, len(stages))
    for i, s in enumerate(stages):
        rates = [by[(s, strand, f"cds_codon{k}")]["boundary_rate"] for k in (1, 2, 3)]
        ax1.bar(np.arange(3) + i * width, rates, width, label=f"stage {s}")
        ax2.plot(profile["distance"], [np.nan if v is None else v for v in profile[f"stage{s}:{strand}"]],
                 label=f"stage {s}", lw=1)
        ax2.axhline(by[(s, strand, "all")]["boundary_rate"], ls=":", lw=0.8, color=f"C{i}")
    ax1.set_xticks(np.arange(3) + width * (len(stages) - 1) / 2, ["codon pos 1", "codon pos 2", "codon pos 3"])
    ax1.set_ylabel("boundary rate (per nt)")
    ax1.set_title("CDS boundary rate by codon position")
    ax1.legend()
    ax2.axvline(0, color="grey", lw=0.8)
    ax2.set_xlabel("distance to start codon (nt, gene direction)")
    ax2.set_ylabel("boundary rate")
    ax2.set_title(f"Boundaries around CDS starts (dotted: {'region' if region else 'genome'}-wide)")
    ax2.legend()
    where = "; " + region.replace("$", r"\$") if region else ""  # a contig name is text, not mathtext
    fig.suptitle(f"dnaHNet segmentation vs annotation (strand: {strand}{where})")
    fig.tight_layout()
    fig.savefig(path_tmp, format=fmt, dpi=120)
    plt.close(fig)
