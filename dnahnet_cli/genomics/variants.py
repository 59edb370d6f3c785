"""VCF variants -> pairs of equal-length REF/ALT sequence windows for likelihood scoring.

Score semantics (used by `score-variants`):
  * every ALT of a record is scored on its own against REF (never ALTs in combination);
  * the shared suffix, then the shared prefix, of REF and ALT are trimmed internally, and an indel in a repeat
    is left-aligned against the reference (as `bcftools norm`), giving the changed reference span
    [start0, end0) and the new bases (the output echoes the original POS/REF/ALT);
  * the REF window is `window` bases of the reference centred on [start0, end0); the ALT windows are stretches
    of the ALT haplotype (reference with the change applied) of the same length: read forward, the one that
    starts at the REF window's first base, read reverse-complemented, the one that ends at its last base. On
    either strand both windows then start at the same base, and a deletion takes extra flanking bases at the
    far end, an insertion fewer. Equal lengths mean an indel's score carries no length bias;
  * on a circular replicon the windows wrap across the origin; on a linear contig they are moved
    off-centre to stay inside it (window_placement=off_centre; a length-changing allele at the very end
    of the contig then gives REF and ALT windows that do not share their first base: see make_windows), and a
    contig (or, for a deletion, its ALT haplotype) shorter than the window is used whole (whole_contig);
  * N/IUPAC bases in the flanks are read as context and never scored; an allele holding them is skipped.
Unscorable ALTs keep their row with a status code (see STATUSES) and no score.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import os
import re
import shutil
import sys
import tempfile
import zlib
from dataclasses import dataclass
from typing import Iterator

import pysam

from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.genomics.fileio import open_text, require_file, text_input_errors
from dnahnet_cli.genomics.genome import Genome, is_bgzf

OK = "OK"
SKIP_SYMBOLIC = "SKIP_SYMBOLIC"            # <DEL>, <INS>, <DUP>, <INV>, <CNV>, <*>, <NON_REF>
SKIP_BREAKEND = "SKIP_BREAKEND"            # ]chr:pos]N, N[chr:pos[, single breakends .A / A.
SKIP_STAR = "SKIP_STAR"                    # spanning deletion '*'
SKIP_MISSING = "SKIP_MISSING"              # ALT '.'
SKIP_NO_CHANGE = "SKIP_NO_CHANGE"          # ALT equals REF
SKIP_REF_MISMATCH = "SKIP_REF_MISMATCH"    # REF differs from the FASTA (case-insensitive)
SKIP_AMBIGUOUS = "SKIP_AMBIGUOUS"          # N or an IUPAC code in the changed bases
SKIP_INVALID_ALLELE = "SKIP_INVALID_ALLELE"  # characters that are not nucleotides
SKIP_OUT_OF_BOUNDS = "SKIP_OUT_OF_BOUNDS"  # REF runs past the end of the contig
SKIP_TOO_LONG = "SKIP_TOO_LONG"            # the change does not fit in the window
SKIP_N_IN_WINDOW = "SKIP_N_IN_WINDOW"      # an N only one window reaches: the two sums would cover unequal bases
SKIP_NO_CONTIG = "SKIP_NO_CONTIG"          # the record's contig is not in the FASTA (others are)
STATUSES = (OK, SKIP_SYMBOLIC, SKIP_BREAKEND, SKIP_STAR, SKIP_MISSING, SKIP_NO_CHANGE, SKIP_REF_MISMATCH,
            SKIP_AMBIGUOUS, SKIP_INVALID_ALLELE, SKIP_OUT_OF_BOUNDS, SKIP_TOO_LONG, SKIP_N_IN_WINDOW, SKIP_NO_CONTIG)

_ACGT = re.compile(r"[ACGT]+")
_INFO_END = re.compile(r"(?:^|;)END=(\d+)")
_IUPAC = re.compile(r"[ACGTNRYSWKMBDHV]+")
# t[p[, t]p], ]p]t, [p[t; single breakends .t / t.; and the telomere forms .[p[ / ]p]. (VCF 4.3, section 5.4)
_BREAKEND = re.compile(r"^(\.?[A-Z]*[\[\]].+[\[\]][A-Z]*\.?|\.[A-Z]+|[A-Z]+\.)$")


# -- alleles ------------------------------------------------------------------------------------
def classify(ref: str, alt: str | None) -> tuple[str, str]:
    """(variant_class, status) of one ALT against REF, before any reference check.

    Classes: snv, mnv (n->n), ins, del, complex (length-changing delins), symbolic, breakend, star,
    missing, no_change, invalid.
    """
    if alt is None or alt == ".":
        return "missing", SKIP_MISSING
    a, r = alt.upper(), ref.upper()
    if a == "*":
        return "star", SKIP_STAR
    if a.startswith("<") and a.endswith(">"):
        return "symbolic", SKIP_SYMBOLIC
    if _BREAKEND.match(a):
        return "breakend", SKIP_BREAKEND
    if not _IUPAC.fullmatch(a) or not _IUPAC.fullmatch(r):
        return "invalid", SKIP_INVALID_ALLELE
    if a == r:
        return "no_change", SKIP_NO_CHANGE
    _, r_core, a_core = trim(r, a)
    status = OK if _ACGT.fullmatch(r_core + a_core) else SKIP_AMBIGUOUS
    if len(r_core) == len(a_core):
        return ("snv" if len(r_core) == 1 else "mnv"), status
    if not r_core:
        return "ins", status
    if not a_core:
        return "del", status
    return "complex", status


def trim(ref: str, alt: str) -> tuple[int, str, str]:
    """Drop the shared suffix, then the shared prefix: (offset of the change in REF, ref core, alt core).

    E.g. REF=CA ALT=C -> (1, 'A', ''): a 1-bp deletion of the A at POS+1.
    """
    while ref and alt and ref[-1] == alt[-1]:
        ref, alt = ref[:-1], alt[:-1]
    k = 0
    while k < len(ref) and k < len(alt) and ref[k] == alt[k]:
        k += 1
    return k, ref[k:], alt[k:]


def left_align(genome: Genome, contig: str, start0: int, end0: int, alt: str) -> tuple[int, int, str]:
    """Move a trimmed insertion or deletion left while the base before it equals its last base, as `bcftools norm`
    does: (start0, end0, alt). Every spelling of an indel in a repeat then gets the same windows, hence the same
    score (the ALT haplotype is the same; only the centring differed). Other alleles are returned unchanged."""
    if (end0 > start0) == bool(alt):  # SNV, MNV or complex
        return start0, end0, alt
    moving = genome.fetch(contig, start0, end0) if end0 > start0 else alt  # the deleted or inserted bases
    while start0 > 0:
        block = genome.fetch(contig, max(0, start0 - 64), start0)
        for base in reversed(block):
            if base != moving[-1]:
                return start0, end0, "" if end0 > start0 else moving
            moving = base + moving[:-1]
            start0, end0 = start0 - 1, end0 - 1
    return start0, end0, "" if end0 > start0 else moving


# -- windows ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WindowPair:
    """Equal-length REF and ALT windows (forward-strand bases) and where the REF window lies.

    `alt` starts at the REF window's first base, for reading both forward; `alt_rev` ends at its last base (in the
    ALT haplotype), for reading both reverse-complemented: on either strand the two windows then start at the
    same base and agree up to the change. They differ only for a length-changing allele.
    start0 is in [0, contig length); end = start0 + n may exceed the contig length, which means the
    window wraps across the origin of a circular replicon (circular_wrap=True).
    """

    ref: str
    alt: str
    alt_rev: str
    start0: int
    end: int
    circular_wrap: bool
    placement: str  # centred | off_centre | whole_contig

    @property
    def n(self) -> int:
        return len(self.ref)


def _clamp(x: int, lo: int, hi: int) -> int:
    return min(max(x, lo), hi)


def make_windows(genome: Genome, contig: str, start0: int, end0: int, alt: str, window: int) -> WindowPair | None:
    """Windows for replacing reference [start0, end0) by `alt` (trimmed); None when it cannot fit.

    The REF window is centred on the replaced reference bases (an insertion's point), so that it is centred the
    same way read on either strand. The forward ALT window is the stretch of the ALT haplotype that starts at the
    REF window's first base, the reverse one the stretch that ends at its last base, all three of one length
    (see the module docstring). The REF window moves off centre only as far as it must for both ALT windows to
    hold the new bases and, on a linear contig, for all three to stay inside. Where no such place exists (an
    insertion longer than about half the window; on a linear contig, a deletion of k bases when the contig is
    less than 2k longer than the window, or a length-changing allele within its own length of an end), the REF
    window stays nearest the centre and each ALT window is placed on its own, as close as it can be while
    holding the new bases inside its sequence.
    """
    length = genome.length(contig)
    reflen, altlen = end0 - start0, len(alt)
    delta = altlen - reflen
    hap_len = length + delta  # length of the ALT haplotype
    n = min(window, length, hap_len)
    core = max(reflen, altlen)
    if n < core or n < 1:
        return None
    centred = start0 - (n - reflen) // 2
    placement = "centred" if n == window else "whole_contig"
    circular = genome.is_circular(contig)
    # starts (REF: reference coordinates, ALT: haplotype coordinates) of windows holding the change
    ref_lo, ref_hi = end0 - n, start0
    alt_lo, alt_hi = start0 + altlen - n, start0
    if not circular:  # ... and inside their sequence
        ref_lo, ref_hi = max(ref_lo, 0), min(ref_hi, length - n)
        alt_lo, alt_hi = max(alt_lo, 0), min(alt_hi, hap_len - n)
    lo, hi = max(ref_lo, alt_lo, alt_lo - delta), min(ref_hi, alt_hi, alt_hi - delta)
    # one REF window that both ALT windows share an end with: every base keeps its context; else the REF window
    # nearest the centre, each ALT window clamped on its own (the same rule on both strands, so that scoring the
    # reverse-complemented genome places every window as the mirror image of this one)
    ws = _clamp(centred, lo, hi) if lo <= hi else _clamp(centred, ref_lo, ref_hi)
    fs, rs = _clamp(ws, alt_lo, alt_hi), _clamp(ws + delta, alt_lo, alt_hi)  # forward, reverse ALT window starts
    if placement == "centred" and (ws != centred or fs != ws or rs != ws + delta):
        placement = "off_centre"
    ref_seq = genome.fetch(contig, ws, ws + n)
    alt_seq = _haplotype(genome, contig, start0, end0, alt, fs, fs + n)
    alt_rev = _haplotype(genome, contig, start0, end0, alt, rs, rs + n)
    s0 = ws % length
    turn = ws - s0  # a whole turn when the window starts at the contig's end (an insertion after its last base)
    # an ALT window reaching past the new bases ends at reference coordinate (its haplotype end - delta)
    wrap = circular and (s0 + n > length or min(fs, rs) - turn < 0 or max(fs, rs) - turn + n - delta > length)
    return WindowPair(ref_seq, alt_seq, alt_rev, s0, s0 + n, bool(wrap), placement)


def _haplotype(genome: Genome, contig: str, start0: int, end0: int, alt: str, hs: int, he: int) -> str:
    """Bases [hs, he) of the ALT haplotype, in its own coordinates (the change starts at start0)."""
    alt_end = start0 + len(alt)
    parts = []
    if hs < start0:
        parts.append(genome.fetch(contig, hs, min(he, start0)))
    parts.append(alt[max(hs - start0, 0): max(min(he, alt_end) - start0, 0)])
    if he > alt_end:
        shift = end0 - alt_end
        parts.append(genome.fetch(contig, max(hs, alt_end) + shift, he + shift))
    return "".join(parts)


# -- chromosome names -----------------------------------------------------------------------------
def write_all_snvs_records(fh, genome: Genome, contig: str, start0: int, end: int,
                           block: int = 1 << 20) -> tuple[int, int]:
    """Every SNV of [start0, end) of `contig` as VCF record lines: one per A/C/G/T base, its three other bases the
    ALTs (what `score-variants --all-snvs` scores, each ALT exactly as if a VCF had listed it); other bases (N,
    IUPAC codes) are left out. Returns (records written, positions left out)."""
    alts = {b: ",".join(x for x in "ACGT" if x != b) for b in "ACGT"}
    written = 0
    for s in range(start0, end, block):
        seq = genome.fetch(contig, s, min(end, s + block))
        lines = [f"{contig}\t{s + i + 1}\t.\t{b}\t{alts[b]}\t.\t.\t.\n" for i, b in enumerate(seq) if b in alts]
        fh.writelines(lines)
        written += len(lines)
    return written, (end - start0) - written


def load_chrom_map(path: str | os.PathLike) -> dict[str, str]:
    """Read a bcftools --rename-chrs file: two whitespace-separated columns `old new` per line."""
    p = require_file(path, "chromosome map")
    mapping: dict[str, str] = {}
    with text_input_errors(p, "chromosome map"), open_text(p, "chromosome map") as fh:  # gzip, BOM: as elsewhere
        for lineno, line in enumerate(fh, 1):
            if not line.strip() or line.startswith("#"):
                continue
            cols = line.split()
            if len(cols) != 2:
                raise DnahnetError(f"{p}: line {lineno}: expected two columns 'old new', got {len(cols)}")
            if cols[0] in mapping and mapping[cols[0]] != cols[1]:
                raise DnahnetError(f"{p}: line {lineno}: {cols[0]} is mapped twice")
            mapping[cols[0]] = cols[1]
    return mapping


def resolve_contig(chrom: str, genome: Genome, rename: dict[str, str]) -> str | None:
    """FASTA name for a VCF chrom: exact match first, then the --chrom-map rename."""
    if chrom in genome:
        return chrom
    new = rename.get(chrom)
    return new if new is not None and new in genome else None


_MITO = ("chrM", "chrMT", "MT", "M")
_VERSION = re.compile(r"^(.+)\.(\d+)$")


def _name_candidates(name: str) -> dict[str, str]:
    """Spellings of a contig name that other tools use for the same sequence, each with the reason."""
    out: dict[str, str] = {}
    if name in _MITO:
        out.update({m: "mitochondrion alias" for m in _MITO if m != name})
    if name.lower().startswith("chr") and len(name) > 3:
        out[name[3:]] = "chr prefix dropped"
    else:
        out["chr" + name] = "chr prefix added"
    versioned = _VERSION.match(name)
    if versioned:
        out[versioned.group(1)] = "accession version dropped"
    return out


def infer_chrom_map(names: list[str], genome: Genome, header_lengths: dict[str, int | None],
                    taken: dict[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """--auto-chr: VCF contig -> (FASTA name, why) for names the FASTA lacks, only where exactly one FASTA
    record fits.

    Tried in order: a `chr` prefix toggled (and chrM/MT aliases), an accession version dropped or added when
    one versioned FASTA name matches (NC_000913 -> NC_000913.3; a different version is never a match: it is
    another sequence), then, for RefSeq/GenBank pairs such as NC_000913.3 <-> U00096.3 that no spelling rule
    links, the one FASTA record whose length equals the VCF's ##contig length. A FASTA record claimed by two
    VCF names, or already named exactly or by --chrom-map, maps nothing.
    """
    taken = taken or {}
    fasta = set(genome.names)
    claimed = {n for n in names if n in fasta} | set(taken.values())
    todo = [n for n in names if n not in fasta and n not in taken]
    by_name: dict[str, tuple[str, str]] = {}
    for name in todo:
        hits = {c: why for c, why in _name_candidates(name).items() if c in fasta}
        if not _VERSION.match(name):
            versions = [f for f in genome.names if (m := _VERSION.match(f)) and m.group(1) == name]
            if len(versions) == 1:
                hits[versions[0]] = "accession version added"
        if len(hits) == 1:
            by_name[name] = next(iter(hits.items()))
    found = _one_to_one(by_name, claimed)
    by_length: dict[str, tuple[str, str]] = {}
    for name in todo:
        want = header_lengths.get(name)
        if name not in by_name and want:
            same = [f for f in genome.names if genome.lengths[f] == want]
            if len(same) == 1 and not _other_version(name, same[0]):  # NC_000913.2 is not NC_000913.3
                # (a version that corrects bases keeps the length)
                by_length[name] = (same[0], f"the only FASTA record of length {want:,} (##contig length)")
    return {**found, **_one_to_one(by_length, claimed | {t for t, _ in found.values()})}


def _other_version(a: str, b: str) -> bool:
    """Whether two names are different versions of one accession (NC_000913.2, NC_000913.3)."""
    ma, mb = _VERSION.match(a), _VERSION.match(b)
    return bool(ma and mb and ma.group(1) == mb.group(1) and a != b)


def _one_to_one(found: dict[str, tuple[str, str]], claimed: set[str]) -> dict[str, tuple[str, str]]:
    """Drop renames onto a claimed FASTA record or onto one that two names would share."""
    targets = [t for t, _ in found.values()]
    return {n: (t, why) for n, (t, why) in found.items() if targets.count(t) == 1 and t not in claimed}


def check_contigs(vcf_path: str, used: list[str], header_lengths: dict[str, int], genome: Genome,
                  rename: dict[str, str], strict: bool = False) -> list[str]:
    """The VCF contigs missing from the FASTA, whose records are skipped (SKIP_NO_CONTIG: a plasmid or decoy the
    reference leaves out). An error lists them when no used contig is in the FASTA (the wrong reference, or other
    names), or under strict=True; a ##contig length that differs from the FASTA's is always one."""
    missing = [c for c in used if resolve_contig(c, genome, rename) is None]
    if missing and (strict or len(missing) == len(used)):
        shown = ", ".join(f"{c} (a FASTA record without sequence)" if c in genome.empty else c for c in missing[:10])
        shown += f", … ({len(missing)} in all)" if len(missing) > 10 else ""
        raise DnahnetError(f"{vcf_path}: contig(s) not in the reference {genome.path}: {shown}; FASTA has: "
                           f"{', '.join(genome.names[:5])}{' …' if len(genome.names) > 5 else ''} "
                           "(--auto-chr renames chr1/NC_... style differences it can prove from names and "
                           "##contig lengths; --chrom-map FILE with 'old new' lines renames any)")
    for chrom, vlen in header_lengths.items():
        contig = resolve_contig(chrom, genome, rename)
        if contig is not None and vlen is not None and genome.lengths[contig] != vlen:
            raise DnahnetError(f"{vcf_path}: ##contig {chrom} has length {vlen} but {contig} in "
                               f"{genome.path} has {genome.lengths[contig]} (wrong assembly?)")
    return missing


# -- VCF reading ----------------------------------------------------------------------------------
UTF8_BOM = b"\xef\xbb\xbf"


def _copy_without_bom(src, dst) -> None:
    """Copy a stream, leaving out a UTF-8 byte-order mark at its start (Windows editors and Excel write one;
    htslib would take it for part of the first header line and find no '##fileformat')."""
    first = src.read(len(UTF8_BOM))
    if first != UTF8_BOM:
        dst.write(first)
    shutil.copyfileobj(src, dst)


class VcfInput:
    """A VCF opened through pysam, from a file (.vcf, bgzip .vcf.gz, plain gzip) or '-' (stdin).

    stdin and plain gzip are first copied to a temporary plain-text file, because htslib cannot seek
    in them and we read the file twice (a check pass, then the scoring pass). Errors name the file and
    line: empty input, missing header, malformed records, truncated gzip.
    """

    def __init__(self, path: str):
        self.path = path
        self._tmp: str | None = None
        try:  # a failed open (or Ctrl-C while stdin is spooled) is no `with` block: remove the spool here
            self._file = self._materialise(path)
            self.is_bcf = self._sniff_bcf()
            self.header_lines = 0 if self.is_bcf else self._count_header_lines()  # a BCF's: once htslib read it
            with self._open() as vf:
                self.header = vf.header.copy()
        except BaseException:
            self.close()
            raise
        if self.is_bcf:  # its records are numbered as lines of the VCF text htslib would write for it
            self.header_lines = len(str(self.header).rstrip("\n").split("\n"))

    def _materialise(self, path: str) -> str:
        if path == "-":
            return self._spool(sys.stdin.buffer, "stdin")
        p = require_file(path, "VCF")
        if p.stat().st_size == 0:
            raise DnahnetError(f"{path}: empty VCF file (no header)")
        with open(p, "rb") as fh:
            head = fh.read(3)
        if (head[:2] == b"\x1f\x8b" and not is_bgzf(p)) or head == UTF8_BOM:  # htslib reads neither
            with open(p, "rb") as fh:
                return self._spool(fh, str(p))
        return str(p)

    def _spool(self, raw, label: str) -> str:
        fd, self._tmp = tempfile.mkstemp(prefix="dnahnet-vcf-", suffix=".vcf")
        head = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
        try:
            with os.fdopen(fd, "wb") as out:
                if head == b"\x1f\x8b":
                    with gzip.GzipFile(fileobj=raw) as gz:
                        _copy_without_bom(gz, out)
                else:
                    _copy_without_bom(raw, out)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:  # __init__ removes the spool on any error
            raise DnahnetError(f"{self.path}: truncated or corrupt gzip ({exc})") from None
        if os.path.getsize(self._tmp) == 0:
            raise DnahnetError(f"{self.path}: empty VCF input (no header)")
        return self._tmp

    def _sniff_bcf(self) -> bool:
        """BCF (binary; BGZF, or uncompressed as `bcftools view -Ou` writes and as a BCF piped to stdin is spooled):
        its text comes from htslib's rendering, not from the file's bytes."""
        try:
            with (gzip.open if is_bgzf(self._file) else open)(self._file, "rb") as fh:
                return fh.read(3) == b"BCF"
        except (EOFError, OSError, zlib.error):
            return False  # reported as a truncated or corrupt file when it is read

    def _text_lines(self) -> Iterator[str]:
        """The file's lines split at '\n' only (a stray '\r' inside a field stays in its line, as htslib reads it),
        decoded as UTF-8 with undecodable bytes kept as surrogates, so VcfWriter writes them back unchanged."""
        if self.is_bcf:  # not through _open, whose save-and-restore of htslib's verbosity would interleave with
            old = pysam.set_verbosity(0)  # that of the records() pass this one runs beside; quiet only while
            try:                          # opening (htslib reports the missing index of a BCF as an error)
                vf = pysam.VariantFile(self._file)
            finally:
                pysam.set_verbosity(old)
            with vf:
                yield from (line + "\n" for line in str(vf.header).rstrip("\n").split("\n"))
                yield from (str(rec) for rec in vf)
            return
        opener = gzip.open if is_bgzf(self._file) else open
        with opener(self._file, "rb") as fh:
            for raw in fh:
                yield raw.decode("utf-8", "surrogateescape")

    def _header_region(self) -> Iterator[str]:
        """The lines htslib reads as the header, in order: '#' lines, and the empty lines it skips among them (up to
        the #CHROM line; an empty line after it is a malformed record, as htslib reads it)."""
        seen_chrom = False
        for line in self._text_lines():
            if line.startswith("#"):
                seen_chrom = seen_chrom or line.startswith("#CHROM")
            elif seen_chrom or line.rstrip("\r\n"):
                return
            yield line

    def _count_header_lines(self) -> int:
        try:
            return sum(1 for _ in self._header_region())
        except (EOFError, OSError, zlib.error) as exc:
            raise DnahnetError(f"{self.path}: truncated or corrupt gzip ({exc})") from None

    @contextlib.contextmanager
    def _open(self) -> Iterator[pysam.VariantFile]:
        old = pysam.set_verbosity(0)  # htslib's own messages would duplicate ours
        try:
            try:
                vf = pysam.VariantFile(self._file)
            except (ValueError, OSError) as exc:
                raise DnahnetError(self._open_problem(exc)) from None
            with vf:
                yield vf
        finally:
            pysam.set_verbosity(old)

    def _open_problem(self, exc: Exception) -> str:
        if "EOF marker" in str(exc) or "truncated" in str(exc):
            return f"{self.path}: truncated bgzip file ({exc})"
        if self.header_lines == 0:
            return f"{self.path}: not a VCF file (no '##fileformat'/'#CHROM' header lines)"
        detail = str(exc).replace(str(self._file), str(self.path)) if self._tmp else str(exc)  # not our spool's name
        return f"{self.path}: not a valid VCF header ({detail})"

    def contig_lengths(self) -> dict[str, int | None]:
        """##contig lengths from the header (None where the header gives none)."""
        return {name: rec.length for name, rec in self.header.contigs.items()}

    def records(self) -> Iterator[tuple[int, pysam.VariantRecord]]:
        """(line number, record) in file order; a malformed line raises a DnahnetError naming it."""
        n = 0
        with self._open() as vf:
            it = iter(vf)
            while True:
                try:
                    rec = next(it)
                except StopIteration:
                    return
                except (OSError, ValueError) as exc:
                    raise DnahnetError(self._record_problem(n, exc)) from None
                n += 1
                try:  # pysam decodes these strictly: a Latin-1 ID was a traceback wherever it was first read
                    rec.chrom, rec.id, rec.ref, rec.alts
                except UnicodeDecodeError as exc:
                    raise DnahnetError(f"{self.path}: line {self.header_lines + n}: CHROM, ID, REF or ALT is not "
                                       f"UTF-8 text ({exc.reason}: byte {exc.object[exc.start:exc.end]!r}); VCF "
                                       "requires UTF-8 there") from None
                yield self.header_lines + n, rec

    def header_text(self) -> list[str]:
        """The input's header lines exactly as written (newlines stripped; the empty lines htslib skips left out)."""
        return [line.rstrip("\r\n") for line in self._header_region() if line.rstrip("\r\n")]

    def records_with_text(self) -> Iterator[tuple[int, pysam.VariantRecord, str]]:
        """(line number, record, the record's line as written): output that must keep every input byte. The two
        readings must pair up one to one; a file where they do not is an error, never a silently shorter output."""
        text = (line for line in itertools.islice(self._text_lines(), self.header_lines, None)
                if not line.startswith("#"))
        lineno = self.header_lines
        for pair in itertools.zip_longest(self.records(), text):
            if pair[0] is None or pair[1] is None:
                raise DnahnetError(f"{self.path}: line {lineno + 1}: the record lines and htslib's reading of them "
                                   "disagree (a line break htslib does not see as one?)")
            (lineno, rec), line = pair
            yield lineno, rec, line.rstrip("\r\n")

    def _record_problem(self, n_ok: int, exc: Exception) -> str:
        """Describe the record after the n_ok-th one, read back as text."""
        try:
            for lineno, line in enumerate(self._text_lines(), 1):
                if lineno == self.header_lines + n_ok + 1:
                    return f"{self.path}: line {lineno}: malformed VCF record ({_diagnose(line)})"
        except (EOFError, OSError, zlib.error) as gz_exc:
            return f"{self.path}: truncated or corrupt gzip after record {n_ok} ({gz_exc})"
        return f"{self.path}: unreadable after record {n_ok} ({exc})"

    def close(self) -> None:
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)
            self._tmp = None

    def __enter__(self) -> "VcfInput":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _diagnose(line: str) -> str:
    cols = line.rstrip("\r\n").split("\t")
    if len(cols) < 8:
        return f"{len(cols)} tab-separated columns, VCF needs at least 8"
    if not cols[1].isdigit():
        return f"POS {cols[1]!r} is not a positive integer"
    if not cols[3] or cols[3] == ".":
        return "REF is empty"
    return "htslib could not parse it"


# -- records -> alleles ---------------------------------------------------------------------------
@dataclass
class Allele:
    """One ALT of one VCF record, with what scoring needs and what the output echoes."""

    line: int
    chrom: str
    pos: int
    id: str
    ref: str
    alt: str
    alt_index: int
    variant_class: str
    status: str
    contig: str | None = None
    start0: int = 0
    end0: int = 0
    alt_core: str = ""
    windows: WindowPair | None = None
    ref_end: int = 0  # 1-based last base the record spans: REF's, or a declared INFO/END's (symbolic alleles)


def expand_record(rec: pysam.VariantRecord, line: int, genome: Genome, rename: dict[str, str],
                  window: int, vcf_path: str = "VCF", strict: bool = False, strand: str = "both",
                  text: str | None = None) -> list[Allele]:
    """Alleles of a record with statuses and, for scorable ones, their windows.

    A REF that differs from the FASTA gives SKIP_REF_MISMATCH, or a DnahnetError under strict=True. `strand`
    (both, forward, reverse) names the ALT windows that will be scored, which the N check looks at. `text` is the
    record's line as read, when the caller has it (see record_end).
    """
    ref = rec.ref or ""
    alts = list(rec.alts) if rec.alts else [None]
    contig = resolve_contig(rec.chrom, genome, rename)
    ref_end = record_end(rec, text)
    start = rec.pos - 1
    # no contig: check_contigs allowed it (not strict, and other contigs are in the FASTA)
    status = SKIP_NO_CONTIG if contig is None else ref_status(rec, line, contig, genome, vcf_path, strict)
    out = []
    for i, alt in enumerate(alts, 1):
        vclass, allele_status = classify(ref, alt)
        a = Allele(line, rec.chrom, rec.pos, rec.id or ".", ref, alt if alt is not None else ".", i,
                   vclass, allele_status, contig, ref_end=ref_end)
        if status in (SKIP_NO_CONTIG, SKIP_OUT_OF_BOUNDS) or (a.status == OK and status is not None):
            a.status = status  # whatever the ALT (a REF N at POS 0 is a telomere, not an ambiguity)
        if a.status == OK:
            off, r_core, alt_core = trim(ref.upper(), alt.upper())
            a.start0, a.end0, a.alt_core = left_align(genome, contig, start + off, start + off + len(r_core), alt_core)
            a.windows = make_windows(genome, contig, a.start0, a.end0, a.alt_core, window)
            if a.windows is None:
                a.status = SKIP_TOO_LONG
            elif any(_n_scored(a.windows.ref) != _n_scored(alt_window) for alt_window in
                     [a.windows.alt] * (strand != "reverse") + [a.windows.alt_rev] * (strand != "forward")):
                # N is context, never scored: when an indel shifts an N run across one window's edge, the REF and
                # ALT sums cover different numbers of bases and the difference is mostly that count (~1 nat each)
                a.status = SKIP_N_IN_WINDOW
        out.append(a)
    return out


def record_end(rec: pysam.VariantRecord, text: str | None = None) -> int:
    """The 1-based last base a record spans, as `tabix -p vcf` reads it: REF's, or INFO/END's when further (a
    symbolic <DEL>). htslib sets `rec.stop` from END only when the header declares it an Integer; tabix reads
    the INFO text whatever the header says, and so does this: from `text`, the record's line as read, when given
    (pysam renders a record strictly as UTF-8: a Latin-1 byte anywhere in the line lost END)."""
    end = rec.pos + max(len(rec.ref or ""), 1) - 1
    declared = rec.header.info.get("END")
    if declared is not None and declared.type == "Integer":
        return max(end, rec.stop)
    try:
        columns = (text if text is not None else str(rec)).split("\t", 8)
    except UnicodeDecodeError:  # pysam renders strictly; a Latin-1 byte elsewhere in the line: REF's end
        return end
    match = _INFO_END.search(columns[7].rstrip("\n")) if len(columns) > 7 else None
    return max(end, int(match.group(1))) if match else end


def _n_scored(window: str) -> int:
    return sum(map(window.count, "ACGT"))


def ref_status(rec: pysam.VariantRecord, line: int, contig: str, genome: Genome, vcf_path: str = "VCF",
               strict: bool = False) -> str | None:
    """None when REF matches the FASTA (case-insensitive), else SKIP_OUT_OF_BOUNDS / SKIP_REF_MISMATCH.

    Under strict=True a mismatch raises a DnahnetError naming the file, line and both sequences.
    """
    ref, start = (rec.ref or "").upper(), rec.pos - 1
    if start < 0:  # POS 0: a telomere in VCF 4.3 (as is POS N+1, which the next test catches)
        if strict:
            raise DnahnetError(f"{vcf_path}: line {line}: POS {rec.pos} on {rec.chrom}: before the first base "
                               "(VCF 4.3's telomere position)")
        return SKIP_OUT_OF_BOUNDS
    if start + len(ref) > genome.length(contig):
        if strict:
            raise DnahnetError(f"{vcf_path}: line {line}: REF at {rec.chrom}:{rec.pos} runs past the end of "
                               f"{contig} ({genome.length(contig)} bases)")
        return SKIP_OUT_OF_BOUNDS
    if not _IUPAC.fullmatch(ref):
        return None  # each ALT is then classified as invalid
    actual = genome.fetch(contig, start, start + len(ref))
    if actual == ref:
        return None
    if strict:
        raise DnahnetError(f"{vcf_path}: line {line}: REF {rec.ref} at {rec.chrom}:{rec.pos} does not match "
                           f"the reference ({actual}) in {genome.path}")
    return SKIP_REF_MISMATCH
