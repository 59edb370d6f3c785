"""Zero-shot gene essentiality: put premature stops into each gene and score the damage.

Three protocols (`EssentialityConfig.protocol`; `dnahnet essentiality --protocol`):

* "paper" (the default; dnaHNet's evaluation as described publicly): the 15-nt stop sequence
  `TAATAATAATAGTGA` *replaces* 15 nt of the CDS; window = the model window centred on the gene (flanks fill it);
  essentiality_score = LL(wild type) - LL(knock-out) = -delta_sum (same length, so sum and mean agree up to a
  constant). Where the 15 nt start is not fixed by the description: `anchor="first"` (default) counts the 12 nt
  from the first base of the start codon, so the replacement covers CDS offsets 12-26 (codons 5-9, each a stop
  in frame); `anchor="after"` counts them from the end of the start codon: offsets 15-29 (codons 6-10).
* "evo2" (a third-party reading of Evo 2's protocol): the same 15-nt stop sequence *inserted* after every 12 nt
  of the CDS (before 0-based offsets 12, 24, ..., never into the stop codon), with 4,096 nt of flank on each side
  (`flank`), one mutant per gene; score = -delta_mean, because the mutant is longer than the wild type.
* "cassette" (dnahnet's own Evo-style stop insertion), with the defaults pinned here:
  * cassette `TAGCTAGCTAGC` (12 nt): a stop codon in all three reading frames, and a multiple of 3 so the
    downstream frame is kept; it is checked to hold a stop in the gene's frame under its genetic code;
  * inserted before the codon nearest 10% of the CDS length (`positions`, fractions of the CDS or nt
    offsets >= 1), or before every `tile`-th nucleotide; never before the start or the stop codon;
  * window = CDS plus flanks on the gene's strand (reverse complement for minus-strand genes), flank
    = (window - CDS - cassette) / 2 so the mutant fits the model window; genes longer than that are
    cropped to a model-sized window centred on the insertion; circular contigs wrap at the origin;
  * delta_sum = LL(mutant) - LL(wild type) and delta_mean = mean per-base LL(mutant) - mean LL(wild type)
    (N bases excluded), averaged over insertions (and over both strands with `rc_average`);
  * essentiality_score = -delta (`reduce` = mean by default): higher = more essential.
Everything here except `score_genes` is model-free; `score_genes` needs only `loglik_pairs`.
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Optional, Protocol, Sequence

import numpy as np

from dnahnet_cli.genomics.alphabet import reverse_complement
from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.genomics.fileio import open_text, text_input_errors
from dnahnet_cli.genomics.gff import (OK, Annotation, Gene, context_window, fetch, oriented_index, orient,
                                     unambiguous_stop_codons)
from dnahnet_cli.tasks.metrics import classification_summary, rankdata

DEFAULT_CASSETTE = "TAGCTAGCTAGC"
DEFAULT_POSITIONS = (0.1,)
PROTOCOLS = ("paper", "evo2", "cassette")
PAPER_STOP = "TAATAATAATAGTGA"  # stops in frame: TAA TAA TAA TAG TGA
PAPER_OFFSET = {"first": 12, "after": 15}  # CDS offset where the paper's 15-nt replacement starts, per anchor
EVO2_EVERY = 12
EVO2_FLANK = 4096

COLUMNS = [
    "seqid", "start1", "end", "strand", "gene_id", "locus_tag", "name", "cds_len", "gc_content",
    "n_insertions", "ll_wt", "ll_mut", "delta_mean", "delta_sum", "essentiality_score", "flags", "status",
]


class PairScorer(Protocol):
    def loglik_pairs(self, refs: list[str], alts: list[str]) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class EssentialityConfig:
    protocol: str = "paper"
    cassette: str = DEFAULT_CASSETTE  # the stop sequence ("paper"/"evo2" use PAPER_STOP; see for_protocol)
    positions: tuple[float, ...] = DEFAULT_POSITIONS  # "cassette" only
    tile: Optional[int] = None  # "cassette" only
    flank: Optional[int] = None
    window: int = 8192
    reduce: str = "mean"
    rc_average: bool = False
    anchor: str = "first"  # "paper" only: where the 12 nt are counted from (module docstring)

    @classmethod
    def for_protocol(cls, protocol: str, **overrides) -> "EssentialityConfig":
        """The protocol's own defaults (stop sequence, flank, reduce), then the caller's overrides (None = unset)."""
        if protocol not in PROTOCOLS:
            raise DnahnetError(f"--protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
        base = {"paper": dict(cassette=PAPER_STOP, reduce="sum"),
                "evo2": dict(cassette=PAPER_STOP, reduce="mean", flank=EVO2_FLANK),
                "cassette": {}}[protocol]
        given = {k: v for k, v in overrides.items() if v is not None}
        if protocol != "cassette" and ("positions" in given or "tile" in given):
            raise DnahnetError(f"--positions and --tile belong to --protocol cassette, not {protocol}")
        if "positions" in given and "tile" in given:  # --tile used to win without a word
            raise DnahnetError("give either --positions or --tile, not both")
        if "anchor" in given and given["anchor"] not in PAPER_OFFSET:
            raise DnahnetError(f"--anchor must be first or after, not {given['anchor']!r}")
        if "anchor" in given and protocol != "paper":
            raise DnahnetError(f"--anchor belongs to --protocol paper, not {protocol}")
        return cls(protocol=protocol, **{**base, **given})

    def describe(self) -> str:
        """The mutation, for the provenance header."""
        if self.protocol == "paper":
            off = PAPER_OFFSET[self.anchor]
            return (f"paper: {self.cassette} replaces CDS offsets {off}-{off + len(self.cassette) - 1} "
                    f"(anchor {self.anchor}: 12 nt from the {'first base' if self.anchor == 'first' else 'end'} "
                    f"of the start codon); "
                    + (f"window {self.window} nt centred on the gene" if self.flank is None else
                       f"the CDS plus {self.flank} nt each side (at most {self.window} nt, centred on the gene)"))
        if self.protocol == "evo2":
            return (f"evo2: {self.cassette} inserted before every {EVO2_EVERY}th CDS nucleotide; "
                    f"flank {self.flank} nt each side")
        where = f"every {self.tile} nt" if self.tile else "at " + ",".join(f"{p:g}" for p in self.positions)
        return f"cassette: {self.cassette} inserted {where} of the CDS; window {self.window} nt"


@dataclass(frozen=True)
class Insertion:
    """One mutant: wild-type and mutant windows, both read on the gene's strand."""

    offset: int  # spliced-CDS offset the cassette is inserted before
    window: tuple[int, int]  # unwrapped genomic [start0, end) of the wild-type window
    wt: str
    mut: str


@dataclass
class GeneResult:
    index: int  # position in Annotation.genes
    gene: Gene
    gc_content: float
    n_insertions: int = 0
    ll_wt: float = math.nan
    ll_mut: float = math.nan
    delta_mean: float = math.nan
    delta_sum: float = math.nan
    essentiality_score: float = math.nan
    status: str = OK


def validate_cassette(cassette: str, table: int = 11) -> str:
    """Upper-cased cassette; error unless it is ACGT and holds a stop codon when read from its first base."""
    cas = cassette.strip().upper()
    if not cas or not re.fullmatch(r"[ACGT]+", cas):
        raise DnahnetError(f"--cassette {cassette!r}: must be a non-empty A/C/G/T sequence")
    if not _has_stop(cas, table):
        raise DnahnetError(
            f"--cassette {cassette!r}: no stop codon in the gene's reading frame (it is inserted at a codon "
            f"boundary, so one of its codons {[cas[i:i + 3] for i in range(0, len(cas) - 2, 3)]} must be a stop)"
        )
    return cas


def _has_stop(cassette: str, table: int) -> bool:
    """Whether one of the cassette's codons ends translation wherever it stands: terminators that the code also
    reads as amino acids (codes 27, 28, 31) do not count, since inside a CDS they may be read through."""
    stops = unambiguous_stop_codons(table)
    return any(cassette[i : i + 3] in stops for i in range(0, len(cassette) - 2, 3))


def parse_positions(text: str) -> tuple[float, ...]:
    """'0.1,0.5' -> (0.1, 0.5): values < 1 are fractions of the CDS, values >= 1 nucleotide offsets."""
    try:
        vals = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise DnahnetError(f"--positions {text!r}: expected comma-separated numbers, e.g. 0.1,0.5") from None
    if not vals or any(not (0 < v < math.inf) for v in vals):  # nan and inf too: every gene was skipped
        raise DnahnetError(f"--positions {text!r}: values must be > 0 (fractions < 1 or nt offsets >= 1)")
    return vals


def insertion_offsets(gene: Gene, cfg: EssentialityConfig) -> list[int]:
    """Codon-start offsets (spliced CDS) where the cassette goes; [] when the CDS has no inner codon."""
    inner = gene.codon_starts()[1:-1]
    if not inner:
        return []
    n = gene.cds_len
    if cfg.tile:
        targets: Iterable[float] = range(cfg.tile, n - 3, cfg.tile)
    else:
        # an nt offset at or past the stop codon names no codon of this gene (as --tile stops before it)
        targets = [p * n if p < 1 else p for p in cfg.positions if p < 1 or p < n - 3]
    out: list[int] = []
    for t in targets:
        j = bisect.bisect_left(inner, t)
        cands = [inner[k] for k in (j - 1, j) if 0 <= k < len(inner)]
        best = min(cands, key=lambda c: (abs(c - t), c))
        if best not in out:
            out.append(best)
    return out


def build_insertions(gene: Gene, seq: str, circular: bool, cfg: EssentialityConfig) -> list[Insertion]:
    """Wild-type/mutant window pairs for one gene (model-free, deterministic); [] when the gene is too short."""
    if cfg.protocol == "paper":
        return _paper_knockout(gene, seq, circular, cfg)
    if cfg.protocol == "evo2":
        return _evo2_insertions(gene, seq, circular, cfg)
    out = []
    k = len(cfg.cassette)
    for off in insertion_offsets(gene, cfg):
        g = gene.cds_to_genome(off)
        win = context_window(gene, len(seq), circular, cfg.window - k, cfg.flank, focus=(g, g + 1))
        wt = orient(fetch(seq, win[0], win[1], circular), gene.strand)
        i = oriented_index(g, win, gene.strand)
        out.append(Insertion(off, win, wt, wt[:i] + cfg.cassette + wt[i:]))
    return out


def _oriented_run(gene: Gene, window: tuple[int, int], first: int, n: int) -> Optional[int]:
    """Index in the oriented window of CDS offset `first`, if offsets first .. first+n-1 are consecutive there
    (not split by a CDS junction or the window edge); else None."""
    idx = [oriented_index(gene.cds_to_genome(o), window, gene.strand) for o in (first, first + n - 1)]
    inside = 0 <= idx[0] and idx[1] < window[1] - window[0]
    return idx[0] if inside and idx[1] - idx[0] == n - 1 else None


def _paper_knockout(gene: Gene, seq: str, circular: bool, cfg: EssentialityConfig) -> list[Insertion]:
    off, k = gene.first_codon + PAPER_OFFSET[cfg.anchor], len(cfg.cassette)  # counted from the start codon
    if off + k > gene.cds_len - 3:  # the replacement must stay clear of the stop codon
        return []
    g = gene.cds_to_genome(off)
    win = context_window(gene, len(seq), circular, cfg.window, cfg.flank, focus=(g, g + 1))
    wt = orient(fetch(seq, win[0], win[1], circular), gene.strand)
    i = _oriented_run(gene, win, off, k)
    if i is None:
        return []
    return [Insertion(off, win, wt, wt[:i] + cfg.cassette + wt[i + k:])]


def _evo2_insertions(gene: Gene, seq: str, circular: bool, cfg: EssentialityConfig) -> list[Insertion]:
    offsets = list(range(gene.first_codon + EVO2_EVERY, gene.cds_len - 3, EVO2_EVERY))  # from the start codon
    if not offsets:
        return []
    flank = EVO2_FLANK if cfg.flank is None else cfg.flank
    lo, hi = gene.cds_extent
    span = hi - lo
    win = context_window(gene, len(seq), circular, span + 2 * flank, flank)
    wt = orient(fetch(seq, win[0], win[1], circular), gene.strand)
    cuts = [oriented_index(gene.cds_to_genome(o), win, gene.strand) for o in offsets]
    if any(b <= a for a, b in zip(cuts, cuts[1:])):  # a CDS that is not one colinear run
        return []
    pieces, last = [], 0
    for c in cuts:
        pieces += [wt[last:c], cfg.cassette]
        last = c
    return [Insertion(offsets[0], win, wt, "".join(pieces) + wt[last:])]


def gc_content(seq: str) -> float:
    acgt = sum(seq.count(b) for b in "ACGT")
    return (seq.count("G") + seq.count("C")) / acgt if acgt else math.nan


def _n_scored(seq: str) -> int:
    return sum(seq.count(b) for b in "ACGT")


def score_genes(
    annotation: Annotation,
    genome: Mapping[str, str],
    scorer: PairScorer,
    cfg: EssentialityConfig,
    indices: Optional[Sequence[int]] = None,
    progress: Optional[Callable[[int, int], None]] = None,
    pairs_per_call: int = 256,
) -> list[GeneResult]:
    """Score every gene in `indices` (default: all); non-OK genes keep their SKIP_* status and NA scores."""
    indices = range(len(annotation.genes)) if indices is None else indices
    results: list[GeneResult] = []
    pending: list[tuple[GeneResult, list[Insertion]]] = []
    n_pairs = 0

    def flush() -> None:
        nonlocal n_pairs
        refs, alts = [], []
        for _, ins in pending:
            for x in ins:
                refs.append(x.wt)
                alts.append(x.mut)
                if cfg.rc_average:
                    refs.append(reverse_complement(x.wt))
                    alts.append(reverse_complement(x.mut))
        if refs:
            ll_ref, ll_alt = (np.asarray(a, dtype=np.float64) for a in scorer.loglik_pairs(refs, alts))
            pos = 0
            for res, ins in pending:
                m = len(ins) * (2 if cfg.rc_average else 1)
                r, a = ll_ref[pos : pos + m], ll_alt[pos : pos + m]
                n_r = np.array([_n_scored(s) for s in refs[pos : pos + m]], dtype=np.float64)
                n_a = np.array([_n_scored(s) for s in alts[pos : pos + m]], dtype=np.float64)
                pos += m
                _summarise(res, r, a, n_r, n_a, cfg.reduce)
        pending.clear()
        n_pairs = 0
        if progress:
            progress(len(results), len(indices))

    for idx in indices:
        gene = annotation.genes[idx]
        seq = genome[gene.seqid]
        circ = gene.seqid in annotation.circular
        res = GeneResult(idx, gene, gc_content(gene.cds_sequence(seq, circ))
                         if gene.cds and not gene.past_sequence_end else math.nan)
        res.status = gene.status
        results.append(res)
        if res.status != OK:
            continue
        if not _has_stop(cfg.cassette, gene.transl_table):
            res.status = "SKIP_NO_STOP_IN_FRAME"
            continue
        ins = build_insertions(gene, seq, circ, cfg)
        if not ins:
            res.status = "SKIP_TOO_SHORT"
            continue
        res.n_insertions = len(ins)
        pending.append((res, ins))
        n_pairs += len(ins)
        if n_pairs >= pairs_per_call:
            flush()
    flush()
    return results


def _summarise(res: GeneResult, ll_r: np.ndarray, ll_a: np.ndarray, n_r: np.ndarray, n_a: np.ndarray, reduce: str) -> None:
    with np.errstate(invalid="ignore", divide="ignore"):
        d_sum = ll_a - ll_r
        d_mean = ll_a / n_a - ll_r / n_r
    if not np.all(np.isfinite(d_sum)):
        res.status = "SKIP_NOT_SCORABLE"
        return
    res.ll_wt, res.ll_mut = float(ll_r.mean()), float(ll_a.mean())
    res.delta_sum, res.delta_mean = float(d_sum.mean()), float(d_mean.mean())
    res.essentiality_score = -(res.delta_mean if reduce == "mean" else res.delta_sum)


def result_record(res: GeneResult) -> dict:
    """One output row as {column: value} (NaN -> NA when written by outputs.TsvWriter)."""
    g = res.gene
    return {
        "seqid": g.seqid, "start1": g.start0 + 1, "end": g.end, "strand": g.strand, "gene_id": g.gene_id,
        "locus_tag": g.locus_tag or None, "name": g.name or None, "cds_len": g.cds_len,
        "gc_content": res.gc_content, "n_insertions": res.n_insertions, "ll_wt": res.ll_wt,
        "ll_mut": res.ll_mut, "delta_mean": res.delta_mean, "delta_sum": res.delta_sum,
        "essentiality_score": res.essentiality_score, "flags": ",".join(g.flags) or ".", "status": res.status,
    }


BED_COLUMNS = ["chrom", "start", "end", "name", "score", "strand", "essentiality_score", "score_percentile"]


def bed_rows(results: Sequence[GeneResult], lengths: Mapping[str, int]) -> list[dict]:
    """Genome-browser track of the scored genes: BED6+2, 0-based half-open, sorted as `LC_ALL=C sort -k1,1
    -k2,2n`. `score` (0-1000, UCSC shading) is the gene's rank among the scored genes, 1000 = most
    essential; the raw score and its percentile follow. A gene across the origin of a circular replicon
    gives two rows with the same name."""
    scored = [r for r in results if r.status == OK and math.isfinite(r.essentiality_score)]
    if not scored:
        return []
    ranks = rankdata(np.array([r.essentiality_score for r in scored]))
    rows = []
    for r, rank in zip(scored, ranks):
        g, pct = r.gene, 100.0 * rank / len(scored)
        n = lengths[g.seqid]
        parts = [(g.start0, min(g.end, n))] + ([(0, g.end - n)] if g.end > n else [])
        for start, end in parts:
            rows.append({"chrom": g.seqid, "start": start, "end": end, "name": g.label,
                         "score": int(round(10 * pct)), "strand": g.strand,
                         "essentiality_score": r.essentiality_score, "score_percentile": pct})
    return sorted(rows, key=lambda row: (row["chrom"].encode(), row["start"], row["end"]))


# ---------------------------------------------------------------------------------------------------------
# Labels and evaluation

_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}


def read_labels(path: str) -> tuple[dict[str, int], str]:
    """Labels as {name: 0/1} and the format: 'table' (name <tab> 0/1, optional header) or 'list'.

    A plain list names the essential genes, one per line; every other scored gene counts as non-essential.
    """
    rows: list[tuple[int, list[str], str]] = []
    with text_input_errors(path, "labels file"), open_text(path, "labels") as fh:  # e.g. an .xlsx: one line
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if line and not line.startswith("#"):
                rows.append((lineno, re.split(r"[\t,;]+|\s+", line), line))
    if not rows:
        raise DnahnetError(f"{path}: no labels found")
    is_table = any(len(f) >= 2 for _, f, _ in rows)
    if not is_table:
        return {f[0]: 1 for _, f, _ in rows}, "list"
    labels: dict[str, int] = {}
    line_of: dict[str, int] = {}
    for n, (lineno, fields, text) in enumerate(rows):
        val = fields[1].lower() if len(fields) >= 2 else ""
        if val in _TRUE or val in _FALSE:
            name, y = fields[0], 1 if val in _TRUE else 0
            if labels.get(name, y) != y:
                raise DnahnetError(f"{path}: line {lineno}: {name} is labelled {y} here but {labels[name]} on line "
                                   f"{line_of[name]}")
            labels[name], line_of[name] = y, lineno
        elif n == 0:
            continue  # header line
        else:
            raise DnahnetError(f"{path}: line {lineno}: expected 'name<TAB>0/1', got {text!r}")
    if not labels:
        raise DnahnetError(f"{path}: no labels found (only a header line)")
    return labels, "table"


def match_labels(
    labels: Mapping[str, int], fmt: str, annotation: Annotation, candidates: Iterable[int], source: str = "labels"
) -> tuple[dict[int, int], dict]:
    """Map label names onto gene indices; returns {gene index: 0/1} over `candidates` and match counts.

    Names are matched by locus_tag, Name, ID, then gene_synonym (protein-coding genes preferred); a name
    matching several genes is ambiguous and dropped; one matching a gene that was not scored (pseudogene,
    RNA gene) is counted as not scored; two names of one gene with different labels are an error naming `source`.
    With a plain list every unlisted candidate is 0, except the genes an
    ambiguous listed name may mean, which are left out rather than counted as non-essential.
    """
    cand = set(candidates)
    matched: dict[int, int] = {}
    unmatched, ambiguous, not_scored = [], [], 0
    uncertain: set[int] = set()  # genes an ambiguous name may mean
    named_by: dict[int, str] = {}  # the first label name that matched each gene
    for name, y in labels.items():
        every = annotation.lookup(name)
        hits = [i for i in every if annotation.genes[i].is_protein_coding] or every
        if len(hits) == 1 and hits[0] in named_by and labels[named_by[hits[0]]] != y:
            first = named_by[hits[0]]  # e.g. a locus tag and a gene name (or two cases of it) for one gene
            raise DnahnetError(f"{source}: {first} (labelled {labels[first]}) and {name} (labelled {y}) name the same "
                               f"gene, {annotation.genes[hits[0]].label}")
        if len(hits) == 1:
            named_by.setdefault(hits[0], name)
        if not hits:
            unmatched.append(name)
        elif len(hits) > 1:
            ambiguous.append(name)
            uncertain.update(hits)
        elif hits[0] not in cand:
            not_scored += 1
        else:
            matched[hits[0]] = y
    if fmt == "list":  # unlisted genes are 0, except those an ambiguous listed name may mean: left out
        matched = {i: matched.get(i, 0) for i in sorted(cand) if i in matched or i not in uncertain}
    info = {
        "label_format": fmt,
        "n_labels": len(labels),
        "n_labels_matched": len(labels) - len(unmatched) - len(ambiguous),
        "n_labels_unmatched": len(unmatched),
        "n_labels_ambiguous": len(ambiguous),
        "n_labels_not_scored": not_scored,
        "unmatched": unmatched,
        "ambiguous": ambiguous,
    }
    return matched, info


def evaluate(results: Sequence[GeneResult], gene_labels: Mapping[int, int]) -> dict:
    """AUROC/AUPRC of the essentiality score and of length / GC baselines on the same labelled genes."""
    rows = [r for r in results if r.index in gene_labels and math.isfinite(r.essentiality_score)]
    y = np.array([gene_labels[r.index] for r in rows], dtype=np.float64)

    def summary(values: Iterable[float]) -> dict:
        return classification_summary(y, np.fromiter(values, dtype=np.float64, count=len(rows)))

    return {
        "essentiality_score": summary(r.essentiality_score for r in rows),
        "neg_delta_mean": summary(-r.delta_mean for r in rows),
        "neg_delta_sum": summary(-r.delta_sum for r in rows),
        "baselines": {
            "gene_length": summary(r.gene.cds_len for r in rows),
            "gc_content": summary(r.gc_content for r in rows),
        },
    }
