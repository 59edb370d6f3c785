"""Random access to a reference genome: names, lengths and upper-cased slices, with circular wrap-around.

Why a class of its own: variant scoring needs thousands of small slices of a multi-megabase genome.
bgzip (BGZF) and plain FASTA are read through pysam's faidx (the .fai/.gzi are created next to the file
when missing and the directory is writable); plain gzip cannot be indexed, so it is loaded into memory
with a note on stderr. Every slice is checked against the nucleotide alphabet, so a protein FASTA or a
stray character fails with a message naming the file, the record and the position.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import zlib
import re
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pysam

from dnahnet_cli.genomics.alphabet import AlphabetError, encode
from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.genomics.fasta import iter_fasta
from dnahnet_cli.genomics.fileio import new_file_mode, open_text, require_file
from dnahnet_cli.genomics.gff import SEQUENCE_TYPES

_SNIFF_BASES = 10_000  # bases of each record checked at open time (the rest is checked on fetch)


def is_bgzf(path: str | os.PathLike) -> bool:
    """True for BGZF (bgzip) files: gzip magic, FEXTRA flag and the 'BC' extra subfield."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    return len(head) >= 14 and head[:4] == b"\x1f\x8b\x08\x04" and head[12:14] == b"BC"


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def note(message: str) -> None:
    """A one-line note on stderr (never on stdout, which carries data)."""
    sys.stderr.write(f"dnahnet: {message}\n")


class Genome:
    """A reference genome opened for random access.

    `names` keeps the FASTA order; `lengths` maps name -> length; `circular` is the set of replicons
    whose windows wrap across the origin (set by the caller from --circular/--gff/--all-circular). `empty` names the
    records without a base, which are left out (htslib's index leaves them out too) but named when asked for.
    """

    def __init__(self, path: str, names: list[str], lengths: dict[str, int],
                 reader: Callable[[str, int, int], str], closer: Callable[[], None] | None = None):
        self.path = path
        self.names = names
        self.lengths = lengths
        self.circular: set[str] = set()
        self.empty: list[str] = []
        self._read = reader
        self._close = closer

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, quiet: bool = False) -> "Genome":
        """Open a FASTA (plain, gzip, or bgzip with .fai/.gzi); '-' reads stdin into memory. Records without
        sequence are left out, with one note naming them."""
        genome = cls._open(path, quiet)
        if genome.empty and not quiet:
            note(f"{genome.path}: {len(genome.empty)} record(s) without sequence left out: {_preview(genome.empty)}")
        return genome

    @classmethod
    def _open(cls, path: str | os.PathLike, quiet: bool) -> "Genome":
        spath = str(path)
        if spath == "-":
            return cls._in_memory(spath)
        p = require_file(path, "reference FASTA")
        if p.stat().st_size == 0:
            raise DnahnetError(f"{p}: empty FASTA (no records)")
        sniff_fasta(p)
        if _is_gzip(p) and not is_bgzf(p):
            genome = cls._in_memory(spath)  # first: a truncated file is one error line, not a note and an error
            if not quiet:
                note(f"{p} is plain gzip (not bgzip): loaded into memory; "
                     "`gunzip -c FILE | bgzip > FILE.gz` makes it indexable")
            return genome
        try:
            fasta, empty = _open_indexed(p, quiet)
        except (OSError, ValueError) as exc:
            if not quiet:
                note(f"cannot index {p} ({exc}); loading it into memory instead")
            return cls._in_memory(spath)
        names = list(fasta.references)
        if not names:
            fasta.close()
            raise DnahnetError(f"{p}: empty FASTA (no records)")
        if "" in names:  # htslib indexes a bare '>' line; the stream reader rejects it, and so must this path
            fasta.close()
            raise DnahnetError(f"{p}: record {names.index('') + 1}: FASTA header without a name")
        genome = cls(spath, names, dict(zip(names, fasta.lengths)),
                     lambda name, start, end: fasta.fetch(name, start, end), fasta.close)
        genome.empty = empty
        for name in names:  # cheap early check for protein / non-nucleotide files
            genome.fetch(name, 0, min(genome.lengths[name], _SNIFF_BASES))
        return genome

    @classmethod
    def _in_memory(cls, path: str) -> "Genome":
        seqs: dict[str, str] = {}
        empty: list[str] = []
        for name, seq in iter_fasta(path, validate=True):
            if name in seqs or name in empty:
                raise DnahnetError(f"{path}: record {name}: duplicate sequence name")
            if seq:  # htslib's index leaves out empty records: the same names whichever way a file is read
                seqs[name] = seq.upper()
            else:
                empty.append(name)
        if not seqs:
            raise DnahnetError(f"{path}: empty FASTA (no records with sequence)")
        genome = cls(path, list(seqs), {n: len(s) for n, s in seqs.items()},
                     lambda name, start, end: seqs[name][start:end])
        genome.empty = empty
        return genome

    @classmethod
    def from_dict(cls, seqs: dict[str, str], path: str = "<memory>") -> "Genome":
        """A genome from strings (tests, synthetic inputs)."""
        up = {n: s.upper() for n, s in seqs.items()}
        return cls(path, list(up), {n: len(s) for n, s in up.items()},
                   lambda name, start, end: up[name][start:end])

    # -- access -------------------------------------------------------------------------------
    def __contains__(self, name: str) -> bool:
        return name in self.lengths

    def length(self, name: str) -> int:
        self._require(name)
        return self.lengths[name]

    def is_circular(self, name: str) -> bool:
        return name in self.circular

    def set_circular(self, names: Iterable[str]) -> None:
        """Mark replicons as circular; unknown names are an error (a typo would silently do nothing)."""
        names = set(names)
        unknown = sorted(names - set(self.lengths))
        if unknown:
            raise DnahnetError(f"{self.path}: circular contig(s) not in the FASTA: {', '.join(unknown)}")
        self.circular |= names

    def fetch(self, name: str, start0: int, end: int) -> str:
        """Upper-case bases [start0, end) of `name` (0-based, half-open).

        On a circular replicon the coordinates may run past either end and wrap across the origin
        (at most one full turn); on a linear one they must lie inside the contig.
        """
        self._require(name)
        length = self.lengths[name]
        if end < start0:
            raise DnahnetError(f"{self.path}: record {name}: bad interval [{start0}, {end})")
        if 0 <= start0 and end <= length:
            return self._checked(name, start0, self._read(name, start0, end).upper())
        if name not in self.circular:
            raise DnahnetError(f"{self.path}: record {name}: interval [{start0}, {end}) outside the "
                               f"linear contig of length {length}")
        if end - start0 > length:
            raise DnahnetError(f"{self.path}: record {name}: interval of {end - start0} bases is longer "
                               f"than the circular contig ({length})")
        parts, pos = [], start0
        while pos < end:
            off = pos % length
            take = min(end - pos, length - off)
            parts.append(self._checked(name, off, self._read(name, off, off + take).upper()))
            pos += take
        return "".join(parts)

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self) -> "Genome":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _require(self, name: str) -> None:
        if name in self.empty:
            raise DnahnetError(f"{self.path}: record {name!r} has no sequence")
        if name not in self.lengths:
            raise DnahnetError(f"{self.path}: no sequence named {name!r} (have: {_preview(self.names)})")

    def _checked(self, name: str, start0: int, seq: str) -> str:
        try:
            encode(seq)
        except AlphabetError as exc:
            hint = " (is this a protein FASTA?)" if exc.char.upper() in "EFILPQZ*" else ""
            raise DnahnetError(f"{self.path}: record {name}: invalid nucleotide {exc.char!r} at position "
                               f"{start0 + exc.position + 1}{hint}") from None
        return seq


def sniff_fasta(path: Path) -> None:
    """Fail early and clearly when a file is not FASTA at all (text before the first '>')."""
    try:
        with open_text(path, "reference FASTA") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip():
                    if not line.startswith((">", ";")):
                        raise DnahnetError(f"{path}: line {lineno}: not a FASTA file (expected a '>' header)")
                    return
    except UnicodeDecodeError:
        raise DnahnetError(f"{path}: not a text FASTA file") from None
    except (EOFError, OSError, zlib.error) as exc:  # zlib.error: a corrupt gzip stream is not an OSError
        if isinstance(exc, DnahnetError):
            raise
        raise DnahnetError(f"{path}: cannot read FASTA ({exc})") from None
    raise DnahnetError(f"{path}: empty FASTA (no records)")


def _open_indexed(p: Path, quiet: bool = False) -> tuple[pysam.FastaFile, list[str]]:
    """pysam.FastaFile, but a duplicated record name is an error, not an htslib warning; and the names of the
    records without sequence, which the index leaves out.

    htslib keeps the first of two same-named records and only warns. dnahnet builds the .fai under a temporary
    name and puts it in place only when htslib had no such warning, so a parallel job never finds an index that
    hides a record; an index found in place (e.g. from `samtools faidx`) is checked against the FASTA's header
    lines.
    """
    fai = Path(f"{p}.fai")
    _drop_stale_index(p, [fai, Path(f"{p}.gzi")], quiet)
    found = fai.exists()
    built = "" if found else _build_index(p)
    with _captured_stderr() as captured:
        fasta = pysam.FastaFile(str(p))
    messages = built + captured()
    # the index leaves out empty records, and one found in place may also have dropped a same-named one; reading
    # the headers costs a pass over the file, so only files up to _VERIFY_BYTES on disk are checked (every
    # bacterial genome, and then some)
    empty: list[str] = []
    if p.stat().st_size <= _VERIFY_BYTES and len(fasta.references) < _count_headers(p):
        headers = list(_header_names(p))
        seen: set[str] = set()
        dup = next((name for name in headers if name in seen or seen.add(name)), None)
        if dup is not None:  # only an index found in place gets here: _build_index refuses one
            fasta.close()
            raise DnahnetError(f"{p}: record {dup}: duplicate sequence name")
        indexed = set(fasta.references)
        empty = [name for name in headers if name not in indexed]
    if messages.strip():
        sys.stderr.write(messages)
    return fasta, empty


_VERIFY_BYTES = 32 << 20


@contextlib.contextmanager
def _captured_stderr() -> Iterator[Callable[[], str]]:
    """What htslib writes to fd 2 meanwhile (a callable returning it once the block ends), off the terminal."""
    with tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        text: list[str] = []
        try:
            yield lambda: "".join(text)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text.append(capture.read().decode("utf-8", "replace"))


def _open_bytes(p: Path):
    return (gzip.open if _is_gzip(p) else open)(p, "rb")


def _count_headers(p: Path) -> int:
    """Header lines of a FASTA, read at disk (or gunzip) speed: bytes.count over blocks, no per-line work."""
    count, last = 0, b"\n"
    with _open_bytes(p) as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            count += block.count(b"\n>") + (block[:1] == b">" and last == b"\n")
            last = block[-1:]
    return count


def _header_names(p: Path) -> Iterator[str]:
    with _open_bytes(p) as fh:
        for line in fh:
            if line.startswith(b">"):
                words = line[1:].decode("utf-8", "replace").split(None, 1)
                yield words[0] if words else ""


def _build_index(p: Path) -> str:
    """Write p.fai (and p.gzi for bgzip) under temporary names and rename them into place; returns what htslib
    said. htslib writes the .fai in place, piece by piece, and parallel jobs on a fresh reference read it
    half-written: they failed, or saw a genome with records missing and said nothing. The index of a FASTA with a
    duplicated name is never put in place (a DnahnetError instead), so no other job can find and trust it."""
    gz = is_bgzf(p)
    temps = {}
    try:
        for suffix in (".gzi", ".fai") if gz else (".fai",):
            fd, temps[suffix] = tempfile.mkstemp(prefix=f".{p.name}.", suffix=f"{suffix}.tmp", dir=p.parent)
            os.close(fd)
        with _captured_stderr() as captured:
            try:
                pysam.faidx(str(p), "--fai-idx", temps[".fai"], *(["--gzi-idx", temps[".gzi"]] if gz else []))
            except pysam.utils.SamtoolsError as exc:  # the caller loads such a file into memory instead
                raise OSError(str(exc).strip().splitlines()[-1]) from None
        messages = captured()
        dup = re.search(r'Ignoring duplicate sequence "([^"]*)"', messages)
        if dup:
            raise DnahnetError(f"{p}: record {dup.group(1)}: duplicate sequence name")
        for suffix, tmp in temps.items():  # the .gzi first: a .fai in place means the pair is complete
            os.chmod(tmp, new_file_mode())
            os.replace(tmp, f"{p}{suffix}")
    finally:
        for tmp in temps.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    return messages


def _drop_stale_index(p: Path, indexes: list[Path], quiet: bool) -> None:
    """An index older than its FASTA may describe another file (htslib would read the wrong bases without a
    word): remove it so that it is rebuilt, as `samtools faidx` would (OSError when it cannot be removed)."""
    mtime = p.stat().st_mtime
    ages = {}
    for index in indexes:  # a parallel job may be removing a stale index right now: gone is as good as removed
        with contextlib.suppress(FileNotFoundError):
            ages[index] = index.stat().st_mtime
    if not any(age < mtime for age in ages.values()):
        return
    for index in ages:  # the .fai and .gzi are built together: rebuild both
        try:
            with contextlib.suppress(FileNotFoundError):
                if index.stat().st_mtime >= mtime:  # another job has just rebuilt it: keep theirs
                    continue
            index.unlink(missing_ok=True)
        except OSError as exc:  # Genome.open then reads the FASTA into memory, with a note
            raise OSError(f"{index.name} is older than the FASTA and cannot be rebuilt here: {exc.strerror}") from None
    if not quiet:
        note(f"{', '.join(i.name for i in ages)} older than {p.name}: rebuilt")


def _preview(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f", … ({len(names)} in all)" if len(names) > n else "")


def circular_from_gff(path: str | os.PathLike, rename: dict[str, str] | None = None) -> set[str]:
    """Seqids whose GFF3 sequence line (NCBI's `region`, Ensembl's `chromosome`, ...) says Is_circular=true.

    `rename` (from --chrom-map) maps GFF seqids to FASTA names when they differ.
    """
    found: set[str] = set()
    try:
        with open_text(path, "GFF") as fh:
            for line in fh:
                if line.startswith("##FASTA"):
                    break
                if line.startswith("#") or not line.strip():
                    continue
                cols = line.rstrip("\n").split("\t")
                if len(cols) >= 9 and cols[2] in SEQUENCE_TYPES:  # NCBI's region, Ensembl's chromosome
                    attrs = {k.strip().lower(): v.strip().lower() for k, _, v in
                             (a.partition("=") for a in cols[8].split(";"))}
                    if attrs.get("is_circular") == "true":
                        found.add((rename or {}).get(cols[0], cols[0]))
    except UnicodeDecodeError:
        raise DnahnetError(f"{path}: not a text GFF file") from None
    except (EOFError, OSError, zlib.error) as exc:  # zlib.error: a corrupt gzip stream is not an OSError
        if isinstance(exc, DnahnetError):
            raise
        raise DnahnetError(f"{path}: cannot read GFF ({exc})") from None
    return found
