"""Genome segmentation with dnaHNet's learned routers: chunk BED, per-base bedGraph, and an annotation report.

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
  * The report compares the boundaries with GFF region classes (CDS codon positions in the gene's frame,
    start/stop codons, upstream windows, intergenic, RNA genes) against a circular-shift permutation null,
    which keeps the boundaries' spacing (chunk lengths) and breaks only their alignment with the annotation.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import IO, Callable, Iterator, Mapping, Optional, Sequence

import numpy as np

from dnahnet_cli.genomics.alphabet import reverse_complement
from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.model.config import MAX_SEED
from dnahnet_cli.genomics.gff import Annotation, Gene, OK, stop_codons
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


def parse_region(text: str, lengths: Mapping[str, int]) -> Region:
    """`CHROM` or `CHROM:START-END` (1-based, inclusive, as samtools) -> a Region checked against the FASTA."""
    text = text.strip()
    if text in lengths:
        return Region(text, 0, lengths[text])
    chrom, sep, coords = text.rpartition(":")
    match = _COORDS.match(coords) if sep else None
    have = ", ".join(list(lengths)[:5]) + (", ..." if len(lengths) > 5 else "")
    if not sep and text and not any(c in text for c in " \t"):  # a bare name that is not a contig
        raise DnahnetError(f"--region {text!r}: contig {text!r} is not in the FASTA (have: {have})")
    if not match or not chrom:
        raise DnahnetError(f"--region {text!r}: expected CHROM or CHROM:START-END (1-based, inclusive)")
    if chrom not in lengths:
        raise DnahnetError(f"--region {text!r}: contig {chrom!r} is not in the FASTA (have: {have})")
    start, end = (int(g.replace(",", "")) for g in match.groups())
    n = lengths[chrom]
    if start < 1 or end < start:
        raise DnahnetError(f"--region {text!r}: need 1 <= START <= END")
    if end > n:
        raise DnahnetError(f"--region {text!r}: END {end} is past the end of {chrom} (length {n})")
    return Region(chrom, start - 1, end)


def parse_stages(text: str, n_stages: int) -> list[int]:
    """'1', '2', ... or 'all' -> stage numbers (1 = outermost), checked against the model."""
    if n_stages < 1:
        raise DnahnetError("this model has no router (an isotropic baseline): nothing to segment")
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
    fig.suptitle(f"dnaHNet segmentation vs annotation (strand: {strand}{'; ' + region if region else ''})")
    fig.tight_layout()
    fig.savefig(path_tmp, format=fmt, dpi=120)
    plt.close(fig)
