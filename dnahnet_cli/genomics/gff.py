"""GFF3 annotations and the coding sequences they define (shared by `essentiality`, `eval dms`, `segment`).

What the parser does, and why:
  * 1-based inclusive GFF coordinates become 0-based half-open `Segment`s;
  * CDS lines are grouped by `ID` (segments of one CDS share an ID) and linked to their gene through
    `Parent` (directly or via an mRNA/transcript); a CDS with no gene becomes its own gene (Prodigal style);
  * a gene with several CDS (isoforms, ribosomal-slippage products) keeps one canonical CDS: no
    `exception` attribute first, then the longest;
  * pseudogenes, partial genes, genes of unknown strand, genes whose CDS parts lie on both strands (organelle
    trans-splicing) and genes past the end of a linear sequence get a SKIP_* status instead of being dropped,
    so every annotated gene can still be reported;
  * features crossing the origin of a circular seqid (`Is_circular=true` on its `region`) are kept in
    "unwrapped" coordinates: `end` may exceed the sequence length, and `fetch` wraps around the origin;
  * an embedded `##FASTA` section (Prokka/Bakta) is read as the genome.
Translation uses the gene's NCBI genetic code (`transl_table`, default 11; any of NCBI's tables, through
Biopython's copy), with that code's start codons read as M at the start of a CDS.
"""

from __future__ import annotations

import functools
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Mapping, Optional
from urllib.parse import unquote

from dnahnet_cli.genomics.alphabet import AlphabetError, encode, reverse_complement
from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.genomics.fileio import open_text, text_input_errors

GENE_TYPES = {"gene", "pseudogene", "ncRNA_gene", "protein_coding_gene"}
# RNA features that stand for a gene when no gene line is their parent (Prokka without --addgenes, Bakta)
RNA_TYPES = {"tRNA", "rRNA", "tmRNA", "ncRNA", "RNase_P_RNA", "SRP_RNA", "antisense_RNA", "misc_RNA", "sRNA"}
# lines that describe a whole sequence (NCBI: region; Ensembl: chromosome; some tools: plasmid, contig)
SEQUENCE_TYPES = {"region", "chromosome", "plasmid", "contig", "supercontig", "scaffold"}
OK = "OK"

# ---------------------------------------------------------------------------------------------------------
# Genetic code


_BASES = "TCAG"
@functools.lru_cache(maxsize=None)
def codon_table(table: int = 11) -> dict[str, str]:
    """Codon -> amino acid ('*' = stop) for an NCBI translation table (Biopython's copy of NCBI's list; read-only:
    the dict is shared)."""
    code = _ncbi_table(table)
    return {c: code.forward_table.get(c, "*") for c in (a + b + c for a in _BASES for b in _BASES for c in _BASES)}


@functools.lru_cache(maxsize=None)
def start_codons(table: int = 11) -> frozenset[str]:
    """The initiation codons of an NCBI translation table (read as M at the start of a CDS)."""
    return frozenset(_ncbi_table(table).start_codons)


def _ncbi_table(table: int):
    from Bio.Data.CodonTable import unambiguous_dna_by_id

    if table not in unambiguous_dna_by_id:
        raise DnahnetError(f"genetic code {table} is not an NCBI translation table "
                           f"(known: {', '.join(map(str, sorted(unambiguous_dna_by_id)))})")
    return unambiguous_dna_by_id[table]


def stop_codons(table: int = 11) -> set[str]:
    """The terminators of an NCBI translation table, an annotated CDS's last codon. In codes 27, 28 and 31 some of
    them are also read as amino acids inside a CDS (context decides), so `codon_table` gives their sense reading."""
    return set(_ncbi_table(table).stop_codons)


def unambiguous_stop_codons(table: int = 11) -> set[str]:
    """Terminators never read as an amino acid: the only ones a premature stop can rely on (none in code 27)."""
    code = codon_table(table)
    return {c for c in stop_codons(table) if code[c] == "*"}


def translate(cds: str, table: int = 11, initiator: bool = True) -> str:
    """Translate an in-frame coding sequence; an alternative start codon reads as M when `initiator`.

    Codons with ambiguous bases translate to 'X'; a trailing incomplete codon is ignored.
    """
    code = codon_table(table)
    cds = cds.upper()
    aas = [code.get(cds[i : i + 3], "X") for i in range(0, len(cds) - 2, 3)]
    if initiator and aas and cds[:3] in start_codons(table):
        aas[0] = "M"
    return "".join(aas)


# ---------------------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class Feature:
    """One GFF3 line; start0/end are 0-based half-open, attrs are URL-unescaped value lists."""

    seqid: str
    source: str
    type: str
    start0: int
    end: int
    score: Optional[float]
    strand: str
    phase: Optional[int]
    attrs: dict[str, list[str]]
    line: int

    def attr(self, tag: str, default: str = "") -> str:
        vals = self.attrs.get(tag)
        return vals[0] if vals else default

    def flag(self, tag: str) -> bool:
        return self.attr(tag).lower() in ("true", "1", "yes")


@dataclass(frozen=True)
class Segment:
    """A CDS part: [start0, end) in unwrapped genome coordinates, and its GFF phase."""

    start0: int
    end: int
    phase: int = 0

    def __len__(self) -> int:
        return self.end - self.start0


@dataclass
class Gene:
    """A gene with its canonical CDS (parts in transcription order) and a status for downstream commands."""

    gene_id: str
    seqid: str
    strand: str
    start0: int
    end: int
    locus_tag: str = ""
    name: str = ""
    synonyms: tuple[str, ...] = ()
    biotype: str = ""
    feature_type: str = "gene"
    cds: tuple[Segment, ...] = ()
    cds_id: str = ""
    transl_table: int = 11
    pseudo: bool = False
    partial: bool = False
    flags: tuple[str, ...] = ()
    line: int = 0
    keys: tuple[str, ...] = ()  # extra identifiers: ID, `gene`, old_locus_tag

    @property
    def status(self) -> str:
        if self.past_sequence_end:  # first: its bases cannot even be read
            return "SKIP_OUT_OF_BOUNDS"
        if self.pseudo:
            return "SKIP_PSEUDOGENE"
        if self.partial:
            return "SKIP_PARTIAL"
        if "cds_on_both_strands" in self.flags:  # organelle trans-splicing: one CDS model cannot hold it
            return "SKIP_MIXED_STRANDS"
        if not self.cds:
            return "SKIP_NONCODING"
        if self.strand not in "+-":
            return "SKIP_UNKNOWN_STRAND"
        return OK

    @property
    def past_sequence_end(self) -> bool:
        """Set by Annotation.check_genome for a gene past the end of a linear sequence: its CDS cannot be fetched."""
        return "past_sequence_end" in self.flags

    @property
    def is_protein_coding(self) -> bool:
        return bool(self.cds) and not self.pseudo

    @property
    def cds_len(self) -> int:
        return sum(len(s) for s in self.cds)

    @property
    def cds_extent(self) -> tuple[int, int]:
        """Genomic [lo, hi) from the CDS's first to its last base (unwrapped), introns and slippage gaps included."""
        return min(s.start0 for s in self.cds), max(s.end for s in self.cds)

    @property
    def label(self) -> str:
        return self.locus_tag or self.name or self.gene_id

    def cds_to_genome(self, offset: int) -> int:
        """Unwrapped genomic 0-based coordinate of spliced-CDS base `offset` (transcription order)."""
        for seg in self.cds:
            if offset < len(seg):
                return seg.start0 + offset if self.strand == "+" else seg.end - 1 - offset
            offset -= len(seg)
        raise IndexError("offset beyond the CDS")

    @property
    def first_codon(self) -> int:
        """Spliced-CDS offset of the first full codon (the start codon): the first part's GFF phase."""
        return self.cds[0].phase if self.cds else 0

    def codon_starts(self) -> list[int]:
        """Spliced-CDS offsets where a codon starts, honouring each part's phase (frameshifts included)."""
        starts, offset = [], 0
        for seg in self.cds:
            starts.extend(range(offset + seg.phase, offset + len(seg), 3))
            offset += len(seg)
        return [s for s in starts if s + 3 <= offset]

    def codon_positions(self, offset: int) -> list[int]:
        """Unwrapped genomic coordinates of the three bases of the codon at spliced offset `offset`."""
        return [self.cds_to_genome(offset + j) for j in range(3)]

    def ends_with_stop(self, seq: str, circular: bool = False) -> bool:
        """True when the annotated CDS includes its stop codon (NCBI GFF3 style; GTF-derived CDS do not)."""
        frame = self.coding_frame_sequence(seq, circular)
        return len(frame) >= 3 and frame[len(frame) - len(frame) % 3 - 3 :][:3] in stop_codons(self.transl_table)

    def cds_sequence(self, seq: str, circular: bool = False) -> str:
        """The spliced CDS on the gene's strand (phase bases of the first part included)."""
        parts = [fetch(seq, s.start0, s.end, circular) for s in self.cds]
        return "".join(parts) if self.strand == "+" else "".join(reverse_complement(p) for p in parts)

    def coding_frame_sequence(self, seq: str, circular: bool = False) -> str:
        """The CDS from its first full codon (first part's phase removed): what `translate` reads."""
        return self.cds_sequence(seq, circular)[self.first_codon :]

    def protein(self, seq: str, circular: bool = False) -> str:
        """Translated CDS without the trailing stop (NCBI CDS include it, GTF-style ones do not)."""
        frame = self.coding_frame_sequence(seq, circular)
        if self.ends_with_stop(seq, circular):  # by the code's terminators: in code 27 a final TGA is no Trp
            frame = frame[: len(frame) - len(frame) % 3 - 3]
        return translate(frame, self.transl_table)

    def names(self) -> list[str]:
        """Every identifier a user might call this gene by, primary ones first."""
        out = [k for k in (self.locus_tag, self.name, *self.keys, self.gene_id, *self.synonyms) if k]
        return list(dict.fromkeys(out))


@dataclass
class Annotation:
    """A parsed GFF3 file: features, genes, per-seqid lengths/circularity, and any embedded FASTA."""

    path: str
    features: list[Feature]
    genes: list[Gene]
    lengths: dict[str, int] = field(default_factory=dict)
    circular: set[str] = field(default_factory=set)
    fasta: dict[str, str] = field(default_factory=dict)
    _index: Optional[dict[str, list[int]]] = None
    past_end: list[str] = field(default_factory=list)  # genes check_genome found past a linear sequence's end
    length_lines: dict[str, int] = field(default_factory=dict)  # seqid -> the line that states its length

    def genes_by_name(self) -> dict[str, list[int]]:
        """Name -> gene indices; primary identifiers (locus_tag, Name, ID) shadow synonyms."""
        if self._index is None:
            primary: dict[str, list[int]] = defaultdict(list)
            secondary: dict[str, list[int]] = defaultdict(list)
            for i, g in enumerate(self.genes):
                for k in dict.fromkeys(k for k in (g.locus_tag, g.name, *g.keys, g.gene_id) if k):
                    primary[k].append(i)
                for k in g.synonyms:
                    secondary[k].append(i)
            index = dict(primary)
            for k, idx in secondary.items():
                index.setdefault(k, idx)
            self._index = index
        return self._index

    def lookup(self, name: str) -> list[int]:
        """Gene indices matching `name` exactly, else case-insensitively; [] when unknown."""
        index = self.genes_by_name()
        if name in index:
            return index[name]
        low = name.lower()
        hits = sorted({i for k, idx in index.items() if k.lower() == low for i in idx})
        return hits

    def find_gene(self, name: str) -> Gene:
        """The one gene called `name` (locus_tag, Name, ID or synonym); a clear error otherwise."""
        hits = self.lookup(name)
        if not hits:
            raise DnahnetError(f"{self.path}: no gene named {name!r} (searched locus_tag, Name, ID, gene_synonym)")
        coding = [i for i in hits if self.genes[i].is_protein_coding] or hits
        if len(coding) > 1:
            tags = ", ".join(self.genes[i].label for i in coding[:5])
            raise DnahnetError(f"{self.path}: gene name {name!r} is ambiguous ({tags}); use a locus_tag")
        return self.genes[coding[0]]

    def check_genome(self, lengths: Mapping[str, int], genome_path: str) -> None:
        """Fail clearly when a gene's seqid is absent from the FASTA ({record: length}), or the assembly lengths
        disagree. A gene that runs past the end of a linear sequence is kept as SKIP_OUT_OF_BOUNDS and listed in
        `past_end` for the command to warn about: annotators put features past the ends of draft contigs (Bakta's
        tmRNAs), and one such feature should not stop a whole genome's run."""
        for seqid, n in self.lengths.items():
            if seqid in lengths and lengths[seqid] != n:
                where = f"line {self.length_lines[seqid]}: " if seqid in self.length_lines else ""
                raise DnahnetError(
                    f"{self.path}: {where}seqid {seqid} has length {n} in the GFF but {lengths[seqid]} in "
                    f"{genome_path} (wrong assembly?)"
                )
        for i, g in enumerate(self.genes):
            if g.seqid not in lengths:
                names = ", ".join(list(lengths)[:5])
                raise DnahnetError(
                    f"{self.path}: line {g.line}: seqid {g.seqid!r} of gene {g.label} is not in {genome_path} "
                    f"(FASTA records: {names}{', ...' if len(lengths) > 5 else ''})"
                )
            n = lengths[g.seqid]
            end = max([g.end, *(part.end for part in g.cds)])  # a CDS line may reach further than its gene line
            if end > n and g.seqid not in self.circular:
                if "past_sequence_end" not in g.flags:
                    self.genes[i] = replace(g, flags=(*g.flags, "past_sequence_end"))
                    self.past_end.append(f"{g.label} (line {g.line}, ends at {end} on {g.seqid}, {n} nt)")
                continue
            start0 = min([g.start0, *(part.start0 for part in g.cds)])
            if g.seqid in self.circular and (start0 >= n or end - start0 > n):  # fetch would wrap it anywhere
                raise DnahnetError(
                    f"{self.path}: line {g.line}: gene {g.label} at {start0 + 1}..{end} does not fit the {n}-nt "
                    f"circular sequence {g.seqid} (it starts past its end or is longer than it: wrong assembly?)"
                )


# ---------------------------------------------------------------------------------------------------------
# Sequence helpers


def fetch(seq: str, start0: int, end: int, circular: bool = False) -> str:
    """seq[start0:end], wrapping around the origin of a circular sequence (coordinates may be <0 or >len)."""
    n = len(seq)
    if 0 <= start0 <= end <= n:
        return seq[start0:end]
    if not circular:
        raise ValueError(f"interval {start0}-{end} outside linear sequence of length {n}")
    out, pos = [], start0
    while pos < end:
        i = pos % n
        take = min(end - pos, n - i)
        out.append(seq[i : i + take])
        pos += take
    return "".join(out)


def orient(seq: str, strand: str) -> str:
    return reverse_complement(seq) if strand == "-" else seq


def context_window(
    gene: Gene,
    seqlen: int,
    circular: bool,
    size: int,
    flank: Optional[int] = None,
    focus: Optional[tuple[int, int]] = None,
) -> tuple[int, int]:
    """Unwrapped genomic [start0, end) around a gene's CDS for scoring it in genomic context.

    The region is the CDS plus `flank` bases each side (default, and whenever those flanks would make it
    longer than `size`: split what the CDS leaves of `size` evenly, so the gene stays centred). Linear
    sequences clamp at their ends (the window becomes asymmetric); circular ones wrap but never exceed one
    genome length. A CDS longer than `size` is cropped to `size` bases centred on `focus` (genomic [lo, hi),
    e.g. the mutated codons), still inside the region.
    """
    lo, hi = gene.cds_extent
    if flank is None or hi - lo + 2 * max(0, flank) > size:
        left = max(0, size - (hi - lo)) // 2
        right = max(0, size - (hi - lo)) - left
    else:
        left = right = max(0, flank)
    r0, r1 = lo - left, hi + right
    if circular:
        if r1 - r0 > seqlen:
            r0 = lo - (seqlen - (hi - lo)) // 2
            r1 = r0 + seqlen
    else:
        r0, r1 = max(0, r0), min(seqlen, r1)
    if r1 - r0 <= size:
        return r0, r1
    centre = (focus[0] + focus[1]) // 2 if focus else (lo + hi) // 2
    w0 = min(max(centre - size // 2, r0), r1 - size)
    return w0, w0 + size


def oriented_index(genomic: int, window: tuple[int, int], strand: str) -> int:
    """Index of genomic base `genomic` in the window's sequence read on `strand`."""
    w0, w1 = window
    return genomic - w0 if strand == "+" else w1 - 1 - genomic


# ---------------------------------------------------------------------------------------------------------
# Parsing

_GTF_ATTR = re.compile(r'^\s*\w+ "')


def _parse_attrs(text: str, path: str, lineno: int) -> dict[str, list[str]]:
    attrs: dict[str, list[str]] = {}
    if text in ("", "."):
        return attrs
    if _GTF_ATTR.match(text):  # `key "value"` first: GTF (a value may hold '=', e.g. note "k=v")
        raise DnahnetError(f"{path}: line {lineno}: attributes look like GTF (key \"value\"), not GFF3")
    for item in text.split(";"):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise DnahnetError(f"{path}: line {lineno}: malformed attribute {item!r} (expected tag=value)")
        tag, value = item.split("=", 1)
        values = value.split(",")
        attrs[unquote(tag.strip())] = [unquote(v) for v in values] if "%" in value else values
    return attrs


def _parse_line(line: str, path: str, lineno: int) -> Feature:
    cols = line.split("\t")
    if len(cols) != 9:
        hint = " (spaces instead of tabs?)" if len(cols) == 1 and " " in line else ""
        raise DnahnetError(f"{path}: line {lineno}: expected 9 tab-separated GFF3 columns, found {len(cols)}{hint}")
    seqid, source, ftype, start, end, score, strand, phase, attrs = cols
    try:
        s, e = int(start), int(end)
    except ValueError:
        raise DnahnetError(f"{path}: line {lineno}: start/end must be integers, got {start!r}/{end!r}") from None
    if s < 1 or e < s:
        raise DnahnetError(f"{path}: line {lineno}: invalid coordinates {s}..{e} (1-based, start <= end)")
    if strand not in ("+", "-", ".", "?"):
        raise DnahnetError(f"{path}: line {lineno}: invalid strand {strand!r} (expected + - . ?)")
    if phase not in (".", "0", "1", "2"):
        raise DnahnetError(f"{path}: line {lineno}: invalid phase {phase!r} (expected 0, 1, 2 or .)")
    try:
        sc = None if score == "." else float(score)
    except ValueError:
        raise DnahnetError(f"{path}: line {lineno}: invalid score {score!r}") from None
    return Feature(
        seqid=unquote(seqid), source=source, type=ftype, start0=s - 1, end=e, score=sc, strand=strand,
        phase=None if phase == "." else int(phase), attrs=_parse_attrs(attrs, path, lineno), line=lineno,
    )


def _parse_fasta_lines(lines: Iterable[tuple[int, str]], path: str) -> dict[str, str]:
    seqs: dict[str, list[str]] = {}
    name = None
    for lineno, line in lines:
        line = line.strip()
        if not line:
            continue
        if line.startswith(">"):
            name = line[1:].split()[0] if line[1:].split() else ""
            if not name:
                raise DnahnetError(f"{path}: line {lineno}: FASTA header without a name after ##FASTA")
            if name in seqs:
                raise DnahnetError(f"{path}: line {lineno}: record {name}: duplicate sequence name in the ##FASTA section")
            seqs[name] = []
        elif name is None:
            raise DnahnetError(f"{path}: line {lineno}: sequence before the first '>' in the ##FASTA section")
        else:
            seqs[name].append(line)
    out = {k: "".join(v) for k, v in seqs.items()}
    for k, v in out.items():
        try:
            encode(v)
        except AlphabetError as exc:
            raise DnahnetError(f"{path}: ##FASTA record {k}: {exc}") from None
    return out


def read_gff(path: str | os.PathLike) -> tuple[list[Feature], dict[str, tuple[int, int]], dict[str, str]]:
    """Features, ##sequence-region lengths ({seqid: (length, line)}), and the embedded ##FASTA records of a GFF3
    file."""
    path_s = str(path)
    features: list[Feature] = []
    lengths: dict[str, tuple[int, int]] = {}
    fasta: dict[str, str] = {}
    with text_input_errors(path_s, "GFF3 file"), open_text(path, "GFF") as fh:
        numbered = enumerate(fh, 1)
        for lineno, raw in numbered:
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            if line.startswith("##FASTA"):
                fasta = _parse_fasta_lines(numbered, path_s)
                break
            if line.startswith(">"):  # FASTA without the directive: tolerated, as many tools do
                fasta = _parse_fasta_lines([(lineno, line), *numbered], path_s)
                break
            if line.startswith("##sequence-region"):
                parts = line.split()
                if len(parts) == 4 and parts[3].isdigit():
                    lengths[parts[1]] = (int(parts[3]), lineno)
                continue
            if line.startswith("#"):
                continue
            features.append(_parse_line(line, path_s, lineno))
    if not features and not fasta:
        raise DnahnetError(f"{path_s}: no GFF3 features found")
    return features, lengths, fasta


def _unwrap(parts: list[Feature], length: Optional[int], circular: bool) -> list[tuple[int, int, int]]:
    """(start0, end, phase) sorted along the + strand; parts after the origin of a circular seqid get +length."""
    spans = sorted((f.start0, f.end, f.phase or 0) for f in parts)
    if circular and length and len(spans) > 1 and spans[0][0] == 0 and any(e >= length for _, e, _ in spans):
        gaps = [spans[i + 1][0] - spans[i][1] for i in range(len(spans) - 1)]
        cut = max(range(len(gaps)), key=gaps.__getitem__)
        wrap_gap = spans[0][0] + length - spans[-1][1]
        if gaps[cut] > wrap_gap:
            spans = spans[cut + 1 :] + [(s + length, e + length, p) for s, e, p in spans[: cut + 1]]
    return spans


def _one_gene(lines: list[Feature]) -> bool:
    """Whether gene lines sharing an ID describe one gene: one strand, and no two different locus tags or Names
    (a part may leave a name out). Lines that disagree are distinct genes given one ID by mistake."""
    names_agree = all(len({f.attr(tag) for f in lines} - {""}) <= 1 for tag in ("locus_tag", "Name"))
    return names_agree and len({f.strand for f in lines}) == 1


def _spans_its_sequence(f: Feature) -> bool:
    """Whether a sequence-type line starting at base 1 describes its whole seqid: a region, chromosome or plasmid
    does; a contig, supercontig or scaffold line only when it names the seqid (AGP-style GFFs list the component
    contigs of a scaffold, and the first one also starts at base 1)."""
    return f.type in ("region", "chromosome", "plasmid") or f.seqid in (f.attr("ID"), f.attr("Name"))


def _crosses_origin(lines: list[Feature], length: Optional[int], circular: bool) -> bool:
    return circular and bool(length) and any(f.start0 == 0 for f in lines) and any(f.end == length for f in lines)


def _overlap(a: Feature, b: Feature) -> int:
    return min(a.end, b.end) - max(a.start0, b.start0)


def _home_line(part: Feature, genes: list[Feature]) -> Feature:
    """The gene line a CDS part belongs to among distinct genes sharing an ID: the one on its strand (any, for a
    part without one) that overlaps it most, the tighter one on a tie; the first when none overlaps."""
    fits = [g for g in genes if part.strand not in "+-" or g.strand == part.strand]
    best = max(fits, key=lambda g: (_overlap(part, g), -(g.end - g.start0)), default=None)
    return best if best is not None and _overlap(part, best) > 0 else genes[0]


def _join_gene_lines(lines: list[Feature], length: Optional[int], circular: bool) -> Feature:
    """One gene from its lines (each side of a circular origin, or the parts of a trans-spliced gene): the first
    line, spanning all of them (unwrapped across the origin as CDS parts are)."""
    spans = _unwrap(lines, length, circular)
    return replace(lines[0], start0=spans[0][0], end=max(e for _, e, _ in spans))


def _check_unique_ids(features: list[Feature], path: str) -> None:
    """GFF3 IDs are unique, except that the lines of one discontinuous feature (e.g. the parts of a CDS) share
    theirs: same seqid and type. Any other reuse would link children to the wrong parent, so it is an error."""
    first: dict[str, Feature] = {}
    for f in features:
        fid = f.attr("ID")
        if not fid:
            continue
        seen = first.setdefault(fid, f)
        if (seen.seqid, seen.type) != (f.seqid, f.type):
            raise DnahnetError(f"{path}: line {f.line}: ID {fid!r} is already used on line {seen.line} "
                               f"({seen.type} on {seen.seqid}); GFF3 IDs must be unique")


def parse_gff(path: str | os.PathLike, lengths: Optional[Mapping[str, int]] = None,
              circular: Iterable[str] = ()) -> Annotation:
    """Parse a GFF3 file into genes. `lengths` (e.g. from the FASTA) overrides the GFF's own lengths; `circular`
    names replicons to treat as circular besides those with Is_circular=true (a --circular option): it must be
    known here, because it decides how the parts of a gene that crosses the origin are joined."""
    path_s = str(path)
    features, stated, fasta = read_gff(path)  # stated: {seqid: (length, line)}
    circular = set(circular)
    for f in features:
        if f.type in SEQUENCE_TYPES and f.start0 == 0 and _spans_its_sequence(f):
            stated.setdefault(f.seqid, (f.end, f.line))
        if f.type in SEQUENCE_TYPES and f.flag("Is_circular"):  # NCBI: `region` lines; Ensembl: `chromosome`
            circular.add(f.seqid)
    for seqid, seq in fasta.items():
        if seqid in stated and stated[seqid][0] != len(seq):
            raise DnahnetError(f"{path_s}: line {stated[seqid][1]}: seqid {seqid} has length {stated[seqid][0]} "
                               f"there but {len(seq)} in the ##FASTA section (wrong assembly?)")
    seq_lengths = {seqid: n for seqid, (n, _) in stated.items()} | {k: len(v) for k, v in fasta.items()}
    all_lengths = dict(seq_lengths)
    all_lengths.update(lengths or {})

    _check_unique_ids(features, path_s)
    by_id: dict[str, Feature] = {}
    for f in features:
        fid = f.attr("ID")
        if fid and f.type != "CDS":
            by_id.setdefault(fid, f)

    def top_gene(f: Feature) -> Optional[Feature]:
        seen = set()
        while True:
            if f.type in GENE_TYPES:
                return f
            parent = f.attr("Parent")
            if not parent or parent in seen or parent not in by_id:
                return None
            seen.add(parent)
            f = by_id[parent]

    cds_groups: dict[object, list[Feature]] = defaultdict(list)
    for f in features:
        if f.type == "CDS":
            key = ("id", f.attr("ID")) if f.attr("ID") else ("parent", f.attr("Parent")) if f.attr("Parent") else ("line", f.line)
            cds_groups[key].append(f)

    gene_lines: dict[str, list[Feature]] = defaultdict(list)  # lines of a gene-level feature, by ID
    for f in features:
        if f.type in GENE_TYPES and f.attr("ID"):
            gene_lines[f.attr("ID")].append(f)
    tops: list[tuple[Feature, list[Feature]]] = []  # (top gene-level line, CDS group)
    orphan_cds: list[list[Feature]] = []
    for group in cds_groups.values():
        g = top_gene(group[0])
        if g is None:
            orphan_cds.append(group)
        else:
            tops.append((g, group))

    def one_cds_over_lines(lines: list[Feature]) -> bool:  # a trans-spliced gene: its CDS has parts under both
        fid = lines[0].attr("ID")
        return any(sum(any(_overlap(p, line) > 0 for p in group) for line in lines) > 1
                   for g, group in tops if g.attr("ID") == fid)

    # One gene written as several lines (each side of a circular origin, or the parts of a trans-spliced gene)
    # is joined into its first line, which its children's Parent resolves to.
    joined = {fid: lines for fid, lines in gene_lines.items() if len(lines) > 1 and _one_gene(lines) and (
        _crosses_origin(lines, all_lengths.get(lines[0].seqid), lines[0].seqid in circular) or one_cds_over_lines(lines))}

    gene_cds: dict[int, list[list[Feature]]] = defaultdict(list)  # gene line -> CDS groups
    for g, group in tops:
        lines = gene_lines.get(g.attr("ID"), [])
        if len(lines) < 2 or _one_gene(lines):
            gene_cds[g.line].append(group)
            continue
        # distinct genes given one ID by mistake: each CDS part goes to its own gene line, not all of them to the
        # first (which would splice one gene's CDS onto another's)
        homes: dict[int, list[Feature]] = defaultdict(list)
        for part in group:
            homes[_home_line(part, lines).line].append(part)
        for line, parts in homes.items():
            gene_cds[line].append(parts)

    child_types: dict[str, set[str]] = defaultdict(set)
    for f in features:
        for p in f.attrs.get("Parent", []):
            child_types[p].add(f.type)

    genes: list[Gene] = []
    for f in features:
        if f.type in GENE_TYPES:
            lines = joined.get(f.attr("ID"))
            if lines is not None:
                if f is not lines[0]:
                    continue  # joined into its first line, which its children's Parent resolves to
                f = _join_gene_lines(lines, all_lengths.get(f.seqid), f.seqid in circular)
            genes.append(_make_gene(f, gene_cds.get(f.line, []), all_lengths, circular, child_types, path_s))
    for group in orphan_cds:
        genes.append(_make_gene(group[0], [group], all_lengths, circular, child_types, path_s, own=True))
    for f in features:
        if f.type in RNA_TYPES and top_gene(f) is None:
            genes.append(_make_gene(f, [], all_lengths, circular, child_types, path_s, own=True))
    seq_rank = {k: i for i, k in enumerate(dict.fromkeys(f.seqid for f in features))}
    genes.sort(key=lambda g: (seq_rank[g.seqid], g.start0, g.line))  # GFF seqid order, then position
    return Annotation(path_s, features, genes, seq_lengths, circular, fasta,
                      length_lines={seqid: line for seqid, (_, line) in stated.items() if seqid not in fasta})


def _make_gene(
    f: Feature,
    groups: list[list[Feature]],
    lengths: Mapping[str, int],
    circular: set[str],
    child_types: Mapping[str, set[str]],
    path: str,
    own: bool = False,
) -> Gene:
    """Build one Gene from its gene-level feature (or an orphan CDS group when `own`)."""
    strands = {p.strand for grp in groups for p in grp} | {f.strand}
    mixed = len(strands - {".", "?"}) > 1  # kept as SKIP_MIXED_STRANDS, without a CDS model
    if mixed:
        groups = []

    def rank(grp: list[Feature]) -> tuple:
        return ("exception" in grp[0].attrs, -sum(p.end - p.start0 for p in grp), grp[0].line)

    chosen = min(groups, key=rank) if groups else []
    seqlen = lengths.get(f.seqid)
    is_circ = f.seqid in circular
    spans = _unwrap(chosen, seqlen, is_circ) if chosen else []
    strand = f.strand if f.strand in "+-" else (chosen[0].strand if chosen else f.strand)
    if strand == "-":
        spans = spans[::-1]
    cds = tuple(Segment(s, e, p) for s, e, p in spans)
    start0, end = f.start0, f.end
    if cds and seqlen and not is_circ and len(cds) > 1 and min(c.start0 for c in cds) == 0 and max(
            c.end for c in cds) == seqlen:  # read as linear, such a gene would be spliced end to start
        raise DnahnetError(f"{path}: line {f.line}: gene {f.attr('ID') or f.attr('locus_tag')} has parts at both "
                           f"ends of {f.seqid}, as a gene across the origin of a circular sequence has; mark "
                           f"{f.seqid} Is_circular=true (or give --circular {f.seqid})")
    if own and cds:
        start0, end = min(s.start0 for s in cds), max(s.end for s in cds)
    elif cds and seqlen and is_circ and max(s.end for s in cds) > end:
        # gene given as the part before the origin only (or after it only): span the unwrapped CDS
        end = max(s.end for s in cds)
        if max(s.end for s in cds) > seqlen >= f.end:
            start0 = min(start0 if start0 > 0 else seqlen, min(s.start0 for s in cds))
    c0 = chosen[0] if chosen else None
    pick = lambda tag: f.attr(tag) or (c0.attr(tag) if c0 else "")  # noqa: E731
    name = (f.attr("Name") if not own else "") or pick("gene") or (f.attr("Name") if own else "")
    flags = ["cds_on_both_strands"] if mixed else []
    if c0 is not None:
        flags += [e.replace(" ", "_") for e in c0.attrs.get("exception", [])]
        if any("Sec" in t for t in c0.attrs.get("transl_except", [])):
            flags.append("selenocysteine")
    pseudo = (
        f.type == "pseudogene"
        or any(x.flag("pseudo") for x in [f, *(chosen or [])])
        or f.attr("gene_biotype") in ("pseudogene", "transcribed_pseudogene")
        or "pseudogene" in f.attrs
    )
    partial = any(_is_partial(x) for x in [f, *(chosen or [])])
    rna_types = ",".join(sorted(child_types.get(f.attr("ID"), ())))
    biotype = f.attr("gene_biotype") or ("protein_coding" if cds or mixed else rna_types
                                         or (f.type if own else ""))
    try:
        table = int(pick("transl_table") or 11)
        _ncbi_table(table)
    except (ValueError, DnahnetError):
        line = f.line if f.attr("transl_table") or c0 is None else c0.line  # the line the value is on
        raise DnahnetError(f"{path}: line {line}: invalid transl_table {pick('transl_table')!r} (an NCBI genetic "
                           "code number, e.g. 11 for bacteria, 4 for Mycoplasma)") from None
    gid = f.attr("ID") or f"{f.seqid}:{f.start0 + 1}-{f.end}"
    keys = tuple(k for k in (pick("gene"), pick("old_locus_tag"), f.attr("gene_id")) if k)  # Ensembl: gene_id
    return Gene(
        gene_id=gid, seqid=f.seqid, strand=strand, start0=start0, end=end, locus_tag=pick("locus_tag"),
        name=name, synonyms=tuple(pick_all(f, c0, "gene_synonym")), biotype=biotype, feature_type=f.type,
        cds=cds, cds_id=(c0.attr("ID") if c0 else ""), transl_table=table, pseudo=pseudo, partial=partial,
        flags=tuple(flags), line=f.line, keys=keys,
    )


def _is_partial(f: Feature) -> bool:
    """NCBI partial=true / start_range / end_range, or Prodigal's partial=10/01/11 (00 = complete)."""
    v = f.attr("partial").lower()
    prodigal = len(v) == 2 and set(v) <= {"0", "1"} and "1" in v
    return f.flag("partial") or prodigal or "start_range" in f.attrs or "end_range" in f.attrs


def pick_all(f: Feature, c: Optional[Feature], tag: str) -> list[str]:
    return f.attrs.get(tag) or (c.attrs.get(tag, []) if c else [])


def load_annotated_genome(fasta_path: Optional[str], gff: str, circular: Iterable[str] = ()
                          ) -> tuple[Annotation, dict[str, str], str]:
    """The annotation, the genome and its source. The FASTA is read first: its lengths are what joins the parts
    of a gene across the origin of a `circular` replicon when the GFF states no length of its own."""
    genome = _read_fasta(fasta_path) if fasta_path else None
    annotation = parse_gff(gff, {k: len(v) for k, v in genome.items()} if genome else None, circular=circular)
    if not annotation.genes:
        raise DnahnetError(f"{gff}: no genes (gene/CDS features) in this GFF3; is it an annotation file?")
    return (annotation, *load_genome(fasta_path, annotation, genome))


def _read_fasta(path: str) -> dict[str, str]:
    from dnahnet_cli.genomics.fasta import iter_fasta

    return {name: seq.upper() for name, seq in iter_fasta(path)}


def load_genome(fasta_path: Optional[str], annotation: Annotation, sequences: Optional[dict[str, str]] = None
                ) -> tuple[dict[str, str], str]:
    """The genome as {seqid: sequence}: from the FASTA file (or its `sequences`, already read), else from the
    GFF's embedded ##FASTA."""
    if fasta_path:
        genome = sequences if sequences is not None else _read_fasta(fasta_path)
        source = str(fasta_path)
    elif annotation.fasta:
        genome = {k: v.upper() for k, v in annotation.fasta.items()}
        source = f"{annotation.path} (##FASTA)"
    else:
        raise DnahnetError(f"{annotation.path}: no genome given and the GFF has no ##FASTA section")
    annotation.check_genome({k: len(v) for k, v in genome.items()}, source)
    return genome, source


def start_codon_mismatches(annotation: "Annotation", sequence: Callable[[str], str],
                           sample: int = 200) -> tuple[int, int]:
    """(genes whose CDS does not begin with a start codon of its table, genes checked), over up to `sample` scorable
    protein-coding genes spread along the annotation. Seqids and lengths can match while the coordinates come from
    another assembly: then most CDSs begin anywhere (7 of 64 codons start one in table 11), and every score built on
    them is meaningless; a real annotation has a handful at most."""
    genes = [g for g in annotation.genes if g.status == OK]
    checked = genes[:: max(1, len(genes) // sample)][:sample]
    contigs: dict[str, str] = {}
    bad = 0
    for g in checked:
        if g.seqid not in contigs:
            contigs[g.seqid] = sequence(g.seqid)
        frame = g.coding_frame_sequence(contigs[g.seqid], g.seqid in annotation.circular)
        bad += frame[:3] not in start_codons(g.transl_table)
    return bad, len(checked)
