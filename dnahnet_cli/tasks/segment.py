"""Genome segmentation with dnaHNet's learned routers: chunk BED and per-base bedGraph (the annotation report is
segment_report.py).

Why it is built this way (docs/segment.md has the user-facing version):
  * The model is causal: the boundary probability p_t of every stage depends on bases <= t only (on the
    strand being read). A tile therefore needs context on its 5' side only: each tile fetches `overlap`
    extra bases before the part it keeps and those are trimmed, so the low-context bases right after the
    BOS token (and the forced p = 1 there) never reach the output. Minus-strand tiles read the reverse
    complement, so their context lies on the right in genome coordinates.
  * Chunks are read from the stitched per-base tracks, not per tile: they cross tile edges freely, and the
    BED does not depend on the tile size beyond the model's own dependence on context older than `overlap`.
  * Output streams: tiles run left to right (both strands together) and every chunk that is complete and
    that no later chunk can precede is written at once, so `| head` gets lines early and memory stays flat.
  * The report (segment_report.py) compares the boundaries with GFF region classes against a circular-shift
    permutation null.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import IO, Callable, Iterator, Mapping, Optional, Sequence

import numpy as np

from dnahnet_cli.genomics.alphabet import reverse_complement
from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.model.config import MAX_SEED
from dnahnet_cli.genomics.outputs import write_in_pieces

STRAND_NAMES = {"+": "plus", "-": "minus"}
BED_COLUMNS = ["chrom", "start", "end", "name", "score", "strand", "stage", "p_start", "mean_p"]


# ---------------------------------------------------------------------------------------------------------
# Options


@dataclass(frozen=True)
class Region:
    """A 0-based half-open interval of one contig."""

    chrom: str
    start0: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start0


_COORDS = re.compile(r"^([0-9][0-9,]*)-([0-9][0-9,]*)$")  # digits, with optional thousands commas


def parse_region(text: str, lengths: Mapping[str, int], option: str = "--region") -> Region:
    """`CHROM` or `CHROM:START-END` (1-based, inclusive, as samtools) -> a Region checked against the FASTA
    (`option` names the option in errors)."""
    text = text.strip()
    if text in lengths:
        return Region(text, 0, lengths[text])
    chrom, sep, coords = text.rpartition(":")
    match = _COORDS.match(coords) if sep else None
    have = ", ".join(list(lengths)[:5]) + (", ..." if len(lengths) > 5 else "")
    if not sep and text and not any(c in text for c in " \t"):  # a bare name that is not a contig
        raise DnahnetError(f"{option} {text!r}: contig {text!r} is not in the FASTA (have: {have})")
    if not match or not chrom:
        raise DnahnetError(f"{option} {text!r}: expected CHROM or CHROM:START-END (1-based, inclusive)")
    if chrom not in lengths:
        raise DnahnetError(f"{option} {text!r}: contig {chrom!r} is not in the FASTA (have: {have})")
    start, end = (int(g.replace(",", "")) for g in match.groups())
    n = lengths[chrom]
    if start < 1 or end < start:
        raise DnahnetError(f"{option} {text!r}: need 1 <= START <= END")
    if end > n:
        raise DnahnetError(f"{option} {text!r}: END {end} is past the end of {chrom} (length {n})")
    return Region(chrom, start - 1, end)


def parse_stages(text: str, n_stages: int, model: str = "this model") -> list[int]:
    """'1', '2', ... or 'all' -> stage numbers (1 = outermost), checked against the model (named in errors)."""
    if n_stages < 1:
        raise DnahnetError(f"{model}: no router (an isotropic baseline such as a Transformer++): nothing to segment")
    if text == "all":
        return list(range(1, n_stages + 1))
    if not text.isdigit() or not 1 <= int(text) <= n_stages:
        choices = ", ".join(str(s) for s in range(1, n_stages + 1))
        raise DnahnetError(f"--stage {text!r}: this model has {n_stages} stage(s); choose {choices} or all")
    return [int(text)]


def parse_strands(text: str) -> list[str]:
    choices = {"+": ["+"], "-": ["-"], "both": ["+", "-"], "plus": ["+"], "minus": ["-"]}
    if text not in choices:
        raise DnahnetError(f"--strand {text!r}: choose +, - or both")
    return choices[text]


@dataclass
class SegmentOptions:
    stages: list[int]  # stages written / reported (1-based)
    strands: list[str]
    tile: int
    overlap: int
    track_line: bool = False
    permutations: int = 200
    seed: int = 0
    upstream: int = 100
    quiet: bool = False
    tiles_per_block: int = 32

    def check(self) -> None:
        if self.tile < 2:
            raise DnahnetError(f"--tile must be >= 2 bases, not {self.tile}")
        if not 0 <= self.overlap < self.tile:
            raise DnahnetError(f"--overlap must be in [0, --tile) = [0, {self.tile}), not {self.overlap}")
        if self.permutations < 0:
            raise DnahnetError(f"--permutations must be >= 0, not {self.permutations}")
        if self.upstream < 1:
            raise DnahnetError(f"--upstream must be >= 1, not {self.upstream}")
        if not 0 <= self.seed <= MAX_SEED:  # a negative one was a numpy traceback
            raise DnahnetError(f"--seed must be between 0 and {MAX_SEED}, not {self.seed}")


# ---------------------------------------------------------------------------------------------------------
# Tiles -> per-base boundary tracks


def tile_windows(region: Region, tile: int, overlap: int) -> list[tuple[int, int]]:
    """The kept parts [k0, k1) of the tiles: consecutive steps of tile - overlap bases."""
    step = tile - overlap
    return [(k, min(k + step, region.end)) for k in range(region.start0, region.end, step)]


def fetch_span(k0: int, k1: int, strand: str, overlap: int, n: int, circular: bool) -> tuple[int, int]:
    """Genome interval to read for a kept part: `overlap` bases of 5' context (wrapping on circular contigs, as
    many turns as it takes: a plasmid shorter than the overlap is read as the circle it is)."""
    if circular:
        return (k0 - overlap, k1) if strand == "+" else (k0, k1 + overlap)
    return (max(0, k0 - overlap), k1) if strand == "+" else (k0, min(n, k1 + overlap))


def fetch_span_bases(genome, chrom: str, f0: int, f1: int) -> str:
    """Bases [f0, f1) from fetch_span: on a circular contig they may wrap across the origin more than once, which
    Genome.fetch (one turn at most) is asked for piece by piece; a linear span is one piece."""
    n = genome.length(chrom)
    return "".join(genome.fetch(chrom, pos, min(pos + n, f1)) for pos in range(f0, f1, n))


def boundary_mask(tracks: Sequence[np.ndarray], stage: int, lo: int, hi: int) -> np.ndarray:
    """Positions [lo, hi) (track indices) where a stage-`stage` chunk starts: p > 0.5 at every stage <= it."""
    mask = tracks[0][lo:hi] > 0.5
    for s in range(1, stage):
        mask &= tracks[s][lo:hi] > 0.5
    return mask


def iter_track_blocks(engine, genome, region: Region, strands: Sequence[str], opts: SegmentOptions,
                      tracks: dict[str, list[np.ndarray]], circular: bool) -> Iterator[int]:
    """Fill `tracks[strand][stage]` (region coordinates, genome orientation) block by block; yield the
    genome position up to which every track is final."""
    n = genome.length(region.chrom)
    windows = tile_windows(region, opts.tile, opts.overlap)
    a = region.start0
    for i in range(0, len(windows), opts.tiles_per_block):
        jobs, seqs = [], []
        for k0, k1 in windows[i: i + opts.tiles_per_block]:
            for strand in strands:
                f0, f1 = fetch_span(k0, k1, strand, opts.overlap, n, circular)
                seq = fetch_span_bases(genome, region.chrom, f0, f1)
                jobs.append((strand, k0, k1, f0, f1))
                seqs.append(seq if strand == "+" else reverse_complement(seq))
        for (strand, k0, k1, f0, f1), per_stage in zip(jobs, engine.boundaries(seqs)):
            for s, tr in enumerate(per_stage):
                # + : base x is tr[x - f0]; - : base x is tr[f1 - 1 - x] (the reverse complement's index)
                kept = tr[k0 - f0:] if strand == "+" else tr[f1 - k1: f1 - k0][::-1]
                tracks[strand][s][k0 - a: k1 - a] = kept
        yield windows[min(i + opts.tiles_per_block, len(windows)) - 1][1]


# ---------------------------------------------------------------------------------------------------------
# Tracks -> chunks


@dataclass
class Chunks:
    """Parallel arrays of chunks (genome coordinates, 0-based half-open)."""

    start: np.ndarray
    end: np.ndarray
    stage: np.ndarray
    strand: np.ndarray  # 0 = '+', 1 = '-'
    p_start: np.ndarray
    mean_p: np.ndarray

    @classmethod
    def empty(cls) -> "Chunks":
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z, z, z, np.zeros(0), np.zeros(0))

    @classmethod
    def concat(cls, parts: Sequence["Chunks"]) -> "Chunks":
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__))

    def take(self, idx) -> "Chunks":
        return Chunks(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))

    def __len__(self) -> int:
        return len(self.start)


class ChunkStream:
    """Turns one (strand, stage) boundary track into chunks as the track grows left to right.

    '+': a boundary at t opens chunk [t, next boundary); the last one ends at the region end.
    '-': a boundary at x opens a chunk read leftwards, i.e. [previous boundary + 1, x + 1); the lowest one
    starts at the region start. Bases before a region's first boundary (in reading direction) belong to
    a chunk that opened outside the region and are not reported.
    """

    def __init__(self, strand: str, stage: int, region: Region, keep: bool = False):
        self.strand, self.stage, self.region, self.keep = strand, stage, region, keep
        self.scanned = region.start0
        self.last: Optional[int] = None if strand == "+" else region.start0 - 1
        self.done: list[tuple[np.ndarray, np.ndarray]] = []  # (5' base, length) of each chunk, when `keep`

    def frontier(self, upto: int) -> int:
        """No chunk this stream emits later can start before this position."""
        if self.strand == "+":
            return upto if self.last is None else self.last
        return self.last + 1

    def advance(self, tracks: Sequence[np.ndarray], upto: int, final: bool) -> Chunks:
        a = self.region.start0
        new = np.flatnonzero(boundary_mask(tracks, self.stage, self.scanned - a, upto - a)) + self.scanned
        self.scanned = upto
        pts = new if self.last is None else np.concatenate([[self.last], new])
        if self.strand == "+":
            starts, ends = pts[:-1], pts[1:]
            if pts.size:
                self.last = int(pts[-1])
            if final and self.last is not None:
                starts, ends = np.append(starts, self.last), np.append(ends, self.region.end)
        else:
            starts, ends = pts[:-1] + 1, pts[1:] + 1
            self.last = int(pts[-1])
        return self._annotate(tracks, starts.astype(np.int64), ends.astype(np.int64))

    def _annotate(self, tracks: Sequence[np.ndarray], starts: np.ndarray, ends: np.ndarray) -> Chunks:
        """p at each chunk's boundary and the mean p over the stage's positions inside it (the chunk is
        contiguous with its neighbours, so one reduceat covers them all)."""
        if not starts.size:
            return Chunks.empty()
        a, s = self.region.start0, self.stage
        lo, hi = int(starts[0]) - a, int(ends[-1]) - a
        p = tracks[s - 1][lo:hi].astype(np.float64)
        on = boundary_mask(tracks, s - 1, lo, hi) if s > 1 else np.ones(hi - lo, dtype=bool)
        offsets = starts - a - lo
        sums = np.add.reduceat(p * on, offsets)
        counts = np.add.reduceat(on.astype(np.int64), offsets)
        five = starts if self.strand == "+" else ends - 1
        fill = lambda v: np.full(len(starts), v, dtype=np.int64)  # noqa: E731
        chunks = Chunks(starts, ends, fill(s), fill(0 if self.strand == "+" else 1),
                        tracks[s - 1][five - a].astype(np.float64), sums / np.maximum(counts, 1))
        if self.keep:
            self.done.append((five, (ends - starts).astype(np.int32)))
        return chunks


def format_probability(p: float) -> str:
    """4 significant digits, except near the 0.5 threshold: a value that rounds to "0.5" but is not 0.5 gets the
    digits that show which side of the threshold it is on (its shortest float32 form), so `$8 > 0.5` in awk
    keeps every chunk and a bedGraph can be re-thresholded."""
    text = f"{p:.4g}"
    return str(np.float32(p)) if text == "0.5" and p != 0.5 else text


class BedWriter:
    """Writes chunks in (start, end, stage, strand) order, naming them S<stage>_<n> in output order.

    BED6+3 (stage, p_start, mean_p) by default; with a track line, plain BED6, because a genome browser reads
    columns 7 and 8 of a BED as thickStart and thickEnd (integers) and would reject or misdraw ours (the stage
    stays in the name)."""

    def __init__(self, fh: IO[str], track_line: bool = False, description: str = "dnaHNet chunks"):
        self.fh = fh
        self.counters: dict[int, int] = {}
        self.pending: list[Chunks] = []
        self.browser = track_line
        if track_line:
            fh.write(f'track name="dnahnet_chunks" description="{description}" useScore=1\n')

    def add(self, chunks: Chunks) -> None:
        if len(chunks):
            self.pending.append(chunks)

    def flush(self, chrom: str, before: float) -> None:
        """Write the pending chunks that start before `before` (all of them with math.inf)."""
        if not self.pending:
            return
        allc = Chunks.concat(self.pending)
        ready = allc.start < before
        self.pending = [allc.take(~ready)] if (~ready).any() else []
        out = allc.take(ready)
        order = np.lexsort((out.strand, out.stage, out.end, out.start))
        out = out.take(order)
        lines = []
        for s, e, st, sd, p, m in zip(out.start.tolist(), out.end.tolist(), out.stage.tolist(),
                                      out.strand.tolist(), out.p_start.tolist(), out.mean_p.tolist()):
            k = self.counters[st] = self.counters.get(st, 0) + 1
            score = min(1000, max(0, int(math.floor(1000 * p + 0.5))))
            bed6 = f"{chrom}\t{s}\t{e}\tS{st}_{k:06d}\t{score}\t{'+-'[sd]}"
            lines.append(f"{bed6}\n" if self.browser else f"{bed6}\t{st}\t{format_probability(p)}\t{m:.4g}\n")
        write_in_pieces(self.fh, "".join(lines))


class BedGraphWriter:
    """4-column bedGraph of consecutive bases; runs of equal values are merged, across blocks too, so the
    file does not depend on how the track was computed. With merge_equal, runs whose *printed* values (4
    significant digits; more next to 0.5, see format_probability) agree are merged as well: a smaller track for genome browsers, off by default."""

    def __init__(self, fh: IO[str], merge_equal: bool = False, track_line: Optional[str] = None):
        self.fh, self.merge_equal = fh, merge_equal
        self.run: Optional[tuple[str, int, int, float]] = None  # the last run, still growing
        if track_line:
            fh.write(track_line)

    def write(self, chrom: str, offset: int, values: np.ndarray) -> None:
        """Values of bases offset, offset + 1, ... (genome coordinates)."""
        if not values.size:
            return
        if self.merge_equal:  # compare what gets printed
            values = np.array([float(format_probability(v)) for v in values.astype(np.float64).tolist()])
        change = np.flatnonzero(values[1:] != values[:-1]) + 1
        starts = (np.concatenate([[0], change]) + offset).tolist()
        ends = (np.concatenate([change, [values.size]]) + offset).tolist()
        vals = values[np.concatenate([[0], change])].astype(np.float64).tolist()
        runs = list(zip(starts, ends, vals))
        if self.run and self.run[0] == chrom and self.run[2] == offset and self.run[3] == vals[0]:
            runs[0] = (self.run[1], runs[0][1], vals[0])
        elif self.run:
            runs.insert(0, self.run[1:])
        write_in_pieces(self.fh, "".join(f"{chrom}\t{s}\t{e}\t{format_probability(v)}\n" for s, e, v in runs[:-1]))
        self.run = (chrom, *runs[-1])

    def close(self) -> None:
        if self.run:
            _, s, e, v = self.run
            self.fh.write(f"{self.run[0]}\t{s}\t{e}\t{format_probability(v)}\n")
            self.run = None


def bedgraph_track_line(stage: int, strand: str) -> str:
    """The UCSC track line of one --bedgraph file (--track-line): a browser draws a bedGraph only after one."""
    name = STRAND_NAMES[strand]
    return (f'track type=bedGraph name="dnahnet_stage{stage}_{name}" description="dnaHNet stage-{stage} boundary '
            f'probability, {name} strand" visibility=full autoScale=off viewLimits=0:1\n')


def bedgraph_paths(prefix: str, stages: Sequence[int], strands: Sequence[str]) -> dict[tuple[str, int], str]:
    """PREFIX.stageS.bedgraph for a plus-only run; .plus/.minus before the suffix otherwise."""
    out = {}
    for strand in strands:
        tag = "" if strands == ["+"] else f".{STRAND_NAMES[strand]}"
        for s in stages:
            out[(strand, s)] = f"{prefix}.stage{s}{tag}.bedgraph"
    return out


# ---------------------------------------------------------------------------------------------------------
# Driver


Progress = Callable[[str, int, int], None]


def segment_region(engine, genome, region: Region, opts: SegmentOptions, bed: BedWriter,
                   bedgraphs: Mapping[tuple[str, int], BedGraphWriter], circular: bool,
                   progress: Optional[Progress] = None, keep_chunks: bool = False,
                   ) -> tuple[dict[str, list[np.ndarray]], dict]:
    """Segment one region: stream its chunks to `bed` and its tracks to `bedgraphs`.

    Returns the full tracks and the ChunkStreams (keyed by (strand, stage)) for the report.
    """
    n_stages = engine.model.config.n_stages
    tracks = {st: [np.zeros(region.length, dtype=np.float32) for _ in range(n_stages)] for st in opts.strands}
    streams = {(st, s): ChunkStream(st, s, region, keep_chunks) for st in opts.strands for s in opts.stages}
    written = region.start0
    for upto in iter_track_blocks(engine, genome, region, opts.strands, opts, tracks, circular):
        final = upto >= region.end
        for (st, _), stream in streams.items():
            bed.add(stream.advance(tracks[st], upto, final))
        bed.flush(region.chrom, math.inf if final else min(s.frontier(upto) for s in streams.values()))
        for (st, s), graph in bedgraphs.items():
            graph.write(region.chrom, written, tracks[st][s - 1][written - region.start0: upto - region.start0])
            if final:
                graph.close()
        written = upto
        if progress:
            progress(region.chrom, upto - region.start0, region.length)
    return tracks, streams
