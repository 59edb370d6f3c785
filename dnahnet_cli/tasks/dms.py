"""Zero-shot protein deep-mutational-scan (DMS) evaluation in genomic context (docs/eval.md).

Protocol, with the choices pinned here:
  * the gene's CDS comes from the genome + GFF; its translation must equal the assayed protein, or
    contain it at `region_start` (1-based residue of the gene's protein where the assayed protein begins;
    found automatically when unique). Mutant positions are 1-based in the assayed protein;
  * a substitution like `A12P` (multi-mutants `A12P:L15V`, '*' = stop) is written into the wild-type codon by
    `codons="best"`: the codon of the new residue with the fewest nucleotide changes, ties broken by the
    genome's codon usage (most used first, then alphabetical); or `codons="all"`: every codon of the new
    residue, the score being log-mean-exp over them (over all combinations for multi-mutants);
  * window = CDS plus flanks read on the gene's strand (flank = (window - CDS) / 2 by default), cropped
    around the mutated codons when the CDS is longer than the model window;
  * delta = LL(mutant window) - LL(wild-type window) (higher = fitter), compared with the measured score by
    Spearman's rho.
Sequence construction is model-free; `score_plans` needs only an object with `loglik_pairs`.
"""

from __future__ import annotations

import csv
import functools
import itertools
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.genomics.fileio import open_text, text_input_errors
from dnahnet_cli.genomics.gff import OK, Annotation, Gene, codon_table, context_window, fetch, oriented_index, orient

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY*"
_SUB = re.compile(r"^([ACDEFGHIKLMNPQRSTVWY*])(\d+)([ACDEFGHIKLMNPQRSTVWY*])$")
MAX_COMBINATIONS = 256

COLUMNS = [
    "mutant", "n_subs", "codon_changes", "genomic_changes", "n_nt_changes", "n_codon_variants", "dms_score",
    "ll_wt", "ll_mut", "delta", "status",
]


@dataclass(frozen=True)
class Substitution:
    wt: str
    pos: int  # 1-based, in the assayed protein
    mt: str


@dataclass
class DmsRecord:
    mutant: str
    subs: tuple[Substitution, ...]
    score: float
    line: int


@dataclass
class DmsTarget:
    """The assayed protein located on a gene's CDS in its genome."""

    gene: Gene
    seq: str  # the seqid's sequence (+ strand)
    circular: bool
    protein: str  # the assayed protein
    region_start: int  # 1-based residue of the gene's protein where `protein` starts
    cds: str  # spliced CDS on the gene strand (first part's phase bases included)

    def codon_offset(self, pos: int) -> int:
        """Spliced-CDS offset of the first base of assayed residue `pos` (1-based)."""
        return self.gene.cds[0].phase + 3 * (self.region_start - 1 + pos - 1)


@dataclass
class MutantPlan:
    """How one DMS record becomes nucleotide changes; `variants` are {cds offset: new base} maps."""

    record: DmsRecord
    variants: list[dict[int, str]] = field(default_factory=list)
    codon_changes: str = ""
    genomic_changes: str = ""
    n_nt_changes: int = 0
    status: str = OK
    ll_wt: float = math.nan
    ll_mut: float = math.nan
    delta: float = math.nan


def parse_mutant(text: str, where: str) -> tuple[Substitution, ...]:
    """'A2G:L5P' -> substitutions; `where` (file: line N) goes into the error for a malformed string."""
    subs = []
    for part in text.strip().split(":"):
        m = _SUB.match(part.strip())
        if not m or int(m.group(2)) < 1:
            raise DnahnetError(
                f"{where}: malformed mutant {text!r} (expected e.g. M1H or A2G:L5P; residue, 1-based position, residue)"
            )
        subs.append(Substitution(m.group(1), int(m.group(2)), m.group(3)))
    positions = [s.pos for s in subs]
    if len(set(positions)) != len(positions):
        raise DnahnetError(f"{where}: mutant {text!r} changes the same position twice")
    return tuple(subs)


def read_dms(path: str, mutant_col: str = "mutant", score_col: Optional[str] = None) -> tuple[list[DmsRecord], str]:
    """DMS table (CSV or TSV, sniffed from the header) -> (records, the score column read: DMS_score or score when
    not given). A mutant listed twice (replicates, or a merge gone wrong) is an error naming both lines."""
    with text_input_errors(path, "DMS table"):  # a corrupt or truncated gzip: one line naming the file
        try:
            return _read_dms(path, mutant_col, score_col)
        except UnicodeDecodeError as exc:
            raise DnahnetError(f"{path}: not UTF-8 text ({exc.reason}); save the table as UTF-8") from None


def _read_dms(path: str, mutant_col: str, score_col: Optional[str]) -> tuple[list[DmsRecord], str]:
    with open_text(path, "DMS table") as fh:
        header, skipped = fh.readline(), 0
        while header and not header.strip():  # blank lines before the header
            header, skipped = fh.readline(), skipped + 1
        if not header.strip():
            raise DnahnetError(f"{path}: empty DMS table")
        delim = "\t" if header.count("\t") > header.count(",") else ","
        reader = csv.reader(itertools.chain([header], fh), delimiter=delim)
        try:
            return _dms_records(path, reader, mutant_col, score_col, skipped)
        except csv.Error as exc:  # e.g. a field over csv's size limit
            raise DnahnetError(f"{path}: line {reader.line_num + skipped}: not a CSV/TSV row ({exc})") from None


def _dms_records(path: str, reader, mutant_col: str, score_col: Optional[str], skipped: int
                 ) -> tuple[list[DmsRecord], str]:
    """The rows of a DMS table after its header; `skipped` blank lines came before the header."""
    cols = [c.strip() for c in next(reader)]
    if mutant_col in cols and score_col is None:
        score_col = next((c for c in ("DMS_score", "score") if c in cols), None)
        if score_col is None:
            raise DnahnetError(f"{path}: no score column DMS_score or score (columns: {', '.join(cols)}); "
                               f"name yours with --score-col")
    for want, what in ((mutant_col, "mutant"), (score_col, "score")):
        if want not in cols:
            raise DnahnetError(f"{path}: no {what} column {want!r} (columns: {', '.join(cols)})")
        if cols.count(want) > 1:  # the first one was read, without a word
            raise DnahnetError(f"{path}: line {1 + skipped}: {cols.count(want)} columns are named {want!r}")
    im, isc = cols.index(mutant_col), cols.index(score_col)
    records = []
    first_line: dict[frozenset, int] = {}  # a mutant's substitutions (in any order) -> the line it was first on
    for row in reader:
        lineno = reader.line_num + skipped
        if not row or not "".join(row).strip():
            continue
        if len(row) <= max(im, isc):
            raise DnahnetError(f"{path}: line {lineno}: expected {len(cols)} columns, found {len(row)}")
        where = f"{path}: line {lineno}"
        raw = row[isc].strip()
        try:
            score = float(raw) if raw not in ("", "NA", "nan", "NaN", ".") else math.nan
        except ValueError:
            raise DnahnetError(f"{where}: score {raw!r} is not a number") from None
        subs = parse_mutant(row[im], where)
        key = frozenset(subs)
        if key in first_line:  # both would be scored and ranked: a replicate counted twice in rho
            raise DnahnetError(f"{where}: mutant {row[im].strip()!r} is already on line {first_line[key]}; give "
                               "each mutant once (average replicates first)")
        first_line[key] = lineno
        records.append(DmsRecord(row[im].strip(), subs, score, lineno))
    if not records:
        raise DnahnetError(f"{path}: no mutants in the DMS table")
    return records, score_col


def read_protein(path: str) -> str:
    """First record of a protein FASTA (upper-cased, trailing '*' removed)."""
    from dnahnet_cli.genomics.fasta import iter_fasta

    for _, seq in iter_fasta(path, validate=False):
        return seq.upper().rstrip("*")
    raise DnahnetError(f"{path}: empty protein FASTA")


def codon_usage(annotation: Annotation, genome: Mapping[str, str], table: int = 11) -> Counter:
    """Codon counts over every scorable protein-coding gene (the tie-breaker for codon choice)."""
    counts: Counter = Counter()
    for g in annotation.genes:
        if g.status == OK and g.transl_table == table and g.seqid in genome:
            cds = g.coding_frame_sequence(genome[g.seqid], g.seqid in annotation.circular)
            counts.update(cds[i : i + 3] for i in range(0, len(cds) - 2, 3))
    return counts


def choose_codon(wt_codon: str, aa: str, table: int, usage: Mapping[str, int], exclude: tuple[str, ...] = ()) -> str:
    """Codon of `aa` with the fewest changes from `wt_codon`; ties: most used in the genome, then A<C<G<T."""
    cands = [c for c, a in codon_table(table).items() if a == aa and c not in exclude]
    return min(cands, key=lambda c: (sum(x != y for x, y in zip(c, wt_codon)), -usage.get(c, 0), c))


def synonymous_codons(aa: str, table: int) -> list[str]:
    return sorted(c for c, a in codon_table(table).items() if a == aa)


def prepare_target(
    annotation: Annotation,
    genome: Mapping[str, str],
    gene_name: str,
    protein: Optional[str] = None,
    region_start: Optional[int] = None,
    protein_path: str = "protein",
) -> DmsTarget:
    """Locate the assayed protein on the gene; errors clearly when the translation does not match."""
    gene = annotation.find_gene(gene_name)
    if not gene.is_protein_coding or gene.past_sequence_end:  # no CDS, or one the genome lacks
        raise DnahnetError(f"{annotation.path}: line {gene.line}: gene {gene_name!r} ({gene.label}) has no CDS that "
                           f"can be scored ({gene.status})")
    seq = genome[gene.seqid]
    circ = gene.seqid in annotation.circular
    translated = gene.protein(seq, circ)
    if region_start is not None and not 1 <= region_start <= len(translated):
        raise DnahnetError(f"--region-start {region_start}: the protein of {gene.label} has {len(translated)} residues "
                           f"(give 1..{len(translated)})")
    if protein is None:  # the translated CDS itself, or its tail from --region-start
        assayed = translated[region_start - 1 :] if region_start else translated
    else:
        assayed = protein
    if not assayed:  # an empty string matches everywhere: it was 'found' 73 times, or passed every check
        raise DnahnetError(f"{protein_path}: the assayed protein is empty")
    if region_start is None:
        hits = [m.start() for m in re.finditer(f"(?={re.escape(assayed)})", translated)]
        if len(hits) == 1:
            region_start = hits[0] + 1
        elif len(hits) > 1:
            raise DnahnetError(f"{protein_path}: the assayed protein occurs {len(hits)} times in {gene.label}; give --region-start")
        else:
            region_start = 1
    if region_start < 1 or translated[region_start - 1 : region_start - 1 + len(assayed)] != assayed:
        got = translated[region_start - 1 : region_start - 1 + len(assayed)] if region_start >= 1 else ""
        i = next((k for k, (a, b) in enumerate(zip(got, assayed)) if a != b), min(len(got), len(assayed)))
        detail = (
            f"residue {i + 1}: CDS translates to {got[i]!r}, protein has {assayed[i]!r}"
            if i < len(got) and i < len(assayed)
            else f"the CDS protein ({len(translated)} aa) is too short for {len(assayed)} aa from residue {region_start}"
        )
        raise DnahnetError(
            f"{protein_path}: assayed protein does not match the translated CDS of {gene.label} "
            f"({gene.seqid}:{gene.start0 + 1}-{gene.end} {gene.strand}) from residue {region_start}; first difference at {detail}"
        )
    return DmsTarget(gene, seq, circ, assayed, region_start, gene.cds_sequence(seq, circ))


def plan_mutant(
    target: DmsTarget, record: DmsRecord, codons: str, usage: Mapping[str, int], where: str = ""
) -> MutantPlan:
    """Nucleotide changes for one record; errors when a position or wild-type residue does not fit the protein."""
    plan = MutantPlan(record)
    table = target.gene.transl_table
    code = codon_table(table)
    options: list[list[tuple[int, str]]] = []  # per substitution: (offset, codon) candidates
    best: list[tuple[int, str, str]] = []
    for s in record.subs:
        if s.pos > len(target.protein):
            raise DnahnetError(
                f"{where}: mutant {record.mutant}: position {s.pos} is beyond the assayed protein ({len(target.protein)} aa)"
            )
        if target.protein[s.pos - 1] != s.wt:
            raise DnahnetError(
                f"{where}: mutant {record.mutant}: residue {s.pos} is {target.protein[s.pos - 1]!r} in the assayed "
                f"protein, not {s.wt!r} (wrong protein or --region-start?)"
            )
        off = target.codon_offset(s.pos)
        wt_codon = target.cds[off : off + 3]
        if code.get(wt_codon) != s.wt and not (s.pos == 1 and target.region_start == 1 and s.wt == "M"):
            raise DnahnetError(f"{where}: mutant {record.mutant}: codon {wt_codon} at residue {s.pos} does not encode {s.wt}")
        # A residue change must change the codon: at an alternative start (GTG, TTG read as M) the wild-type
        # codon itself encodes V or L elsewhere in the table, and would give a "mutant" equal to the wild type.
        keep_wt = s.wt == s.mt
        if s.mt not in code.values():  # codes 27, 28, 31 read their terminators as amino acids inside a CDS
            raise DnahnetError(f"{where}: mutant {record.mutant}: no codon reads as {s.mt!r} inside a CDS under "
                               f"genetic code {table} (the gene's transl_table)")
        # A synonymous record keeps the wild-type codon, also where that is an alternative start read as M
        # (GTG, TTG: the table reads them as V or L, so the fewest-changes search would have changed GTG to ATG)
        chosen = wt_codon if keep_wt else choose_codon(wt_codon, s.mt, table, usage, exclude=(wt_codon,))
        best.append((off, wt_codon, chosen))
        synonyms = synonymous_codons(s.mt, table)
        if keep_wt and wt_codon not in synonyms:
            synonyms = sorted(synonyms + [wt_codon])
        cands = [chosen] if codons == "best" else [c for c in synonyms if keep_wt or c != wt_codon]
        options.append([(off, c) for c in cands])
    n_comb = math.prod(len(o) for o in options)
    if n_comb > MAX_COMBINATIONS:
        plan.status = "SKIP_TOO_MANY_CODON_COMBINATIONS"
    else:
        for combo in itertools.product(*options):
            changes = {}
            for off, codon in combo:
                wt_codon = target.cds[off : off + 3]
                changes.update({off + j: codon[j] for j in range(3) if codon[j] != wt_codon[j]})
            plan.variants.append(changes)
    plan.codon_changes = ";".join(f"{s.wt}{s.pos}:{w}>{c}" for s, (_, w, c) in zip(record.subs, best))
    genomic = []
    for off, w, c in best:
        for j in range(3):
            if w[j] != c[j]:
                g = target.gene.cds_to_genome(off + j)
                ref, alt = (w[j], c[j]) if target.gene.strand == "+" else (_comp(w[j]), _comp(c[j]))
                genomic.append((g % len(target.seq) + 1, f"{ref}>{alt}"))
    plan.genomic_changes = ",".join(f"{pos}{change}" for pos, change in sorted(genomic)) or "."
    plan.n_nt_changes = len(genomic)
    return plan


def _comp(base: str) -> str:
    return {"A": "T", "C": "G", "G": "C", "T": "A"}.get(base, "N")


def build_windows(
    target: DmsTarget, plan: MutantPlan, window: int, flank: Optional[int] = None, source: str = "DMS table",
) -> tuple[str, list[str]]:
    """Wild-type window and one mutant window per codon variant, all on the gene strand. A multi-mutant whose
    codons lie further apart than the window is the user's to fix (a larger --window): DnahnetError."""
    gene = target.gene
    offsets = [target.codon_offset(s.pos) for s in plan.record.subs]
    gpos = [gene.cds_to_genome(o + j) for o in offsets for j in range(3)]
    win = context_window(gene, len(target.seq), target.circular, window, flank, focus=(min(gpos), max(gpos) + 1))
    wt = orient(fetch(target.seq, win[0], win[1], target.circular), gene.strand)
    muts = []
    for changes in plan.variants:
        mut = list(wt)
        for off, base in changes.items():
            i = oriented_index(gene.cds_to_genome(off), win, gene.strand)
            if not 0 <= i < len(mut):
                raise DnahnetError(
                    f"{source}: line {plan.record.line}: mutant {plan.record.mutant} spans "
                    f"{max(gpos) - min(gpos) + 1} nt, more than the {window}-nt scoring window; give a larger --window"
                )
            assert mut[i] == target.cds[off], "window and CDS disagree"
            mut[i] = base
        muts.append("".join(mut))
    return wt, muts


def logmeanexp(x: np.ndarray) -> float:
    m = float(np.max(x))
    return m + math.log(float(np.mean(np.exp(x - m)))) if math.isfinite(m) else m


def check_windows(
    target: DmsTarget, plans: Sequence[MutantPlan], window: int, flank: Optional[int] = None, source: str = "DMS table",
) -> None:
    """Build every OK plan's windows once, so a mutant that cannot be scored stops the run before any model work."""
    for p in plans:
        if p.status == OK:
            build_windows(target, p, window, flank, source)


def score_plans(
    target: DmsTarget,
    plans: Sequence[MutantPlan],
    scorer,
    window: int,
    flank: Optional[int] = None,
    progress: Optional[Callable[[int, int], None]] = None,
    pairs_per_call: int = 256,
    source: str = "DMS table",
) -> None:
    """Fill ll_wt / ll_mut / delta of every OK plan through `scorer.loglik_pairs` (shared prefixes reused). Run
    `check_windows` first to stop on an unscorable mutant before any model work."""
    todo = [p for p in plans if p.status == OK]
    for start in range(0, len(todo), max(1, pairs_per_call)):
        chunk = todo[start : start + pairs_per_call]
        refs, alts, spans = [], [], []
        for p in chunk:
            wt, muts = build_windows(target, p, window, flank, source)
            spans.append((len(alts), len(alts) + len(muts)))
            refs += [wt] * len(muts)
            alts += muts
        ll_r, ll_a = (np.asarray(a, dtype=np.float64) for a in scorer.loglik_pairs(refs, alts))
        for p, (a, b) in zip(chunk, spans):
            p.ll_wt = float(ll_r[a])
            p.ll_mut = logmeanexp(ll_a[a:b])
            p.delta = p.ll_mut - p.ll_wt
            if not math.isfinite(p.delta):
                p.status = "SKIP_NOT_SCORABLE"
        if progress:
            progress(min(start + pairs_per_call, len(todo)), len(todo))


def blosum62_score(subs: Sequence[Substitution]) -> float:
    """Sum of BLOSUM62 scores of the substitutions (Biopython's matrix; '*' = stop): the trivial
    higher-is-more-conservative baseline peers report next to DMS correlations."""
    matrix = _blosum62()
    return float(sum(matrix[s.wt][s.mt] for s in subs))


@functools.lru_cache(maxsize=1)
def _blosum62():
    from Bio.Align import substitution_matrices

    return substitution_matrices.load("BLOSUM62")


def plan_record(plan: MutantPlan) -> dict:
    r = plan.record
    return {
        "mutant": r.mutant, "n_subs": len(r.subs), "codon_changes": plan.codon_changes,
        "genomic_changes": plan.genomic_changes, "n_nt_changes": plan.n_nt_changes,
        "n_codon_variants": len(plan.variants), "dms_score": r.score, "ll_wt": plan.ll_wt,
        "ll_mut": plan.ll_mut, "delta": plan.delta, "status": plan.status,
    }
