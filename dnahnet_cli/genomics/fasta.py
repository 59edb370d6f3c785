"""Streaming FASTA reader with the validation every command needs (plain or gzip, '-' for stdin)."""

from __future__ import annotations

import os
import zlib
from typing import Iterator

from dnahnet_cli.genomics.alphabet import AlphabetError, encode
from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.genomics.fileio import open_text


def iter_fasta(path: str | os.PathLike, validate: bool = True) -> Iterator[tuple[str, str]]:
    """Yield (name, sequence) for each record; name is the first word of the header line.

    With validate=True a record holding a non-nucleotide character (e.g. a protein FASTA) raises a
    DnahnetError that names the file, the record and the offending letter. A file that has text before
    its first '>' is reported as not FASTA; a file with no records raises as empty.
    """
    name: str | None = None
    parts: list[str] = []
    n_records = 0
    seen: set[str] = set()
    try:
        with open_text(path, "FASTA") as fh:
            for lineno, line in enumerate(fh, 1):
                line = line.strip()
                if not line:
                    continue
                if line.startswith(">"):
                    if name is not None:
                        yield name, _checked(path, name, "".join(parts), validate)
                        n_records += 1
                    header = line[1:].split()
                    if not header:
                        raise DnahnetError(f"{path}: line {lineno}: FASTA header without a name")
                    name, parts = header[0], []
                    if name in seen:
                        raise DnahnetError(f"{path}: line {lineno}: record {name}: duplicate sequence name")
                    seen.add(name)
                elif line.startswith(";"):
                    continue
                elif name is None:
                    raise DnahnetError(f"{path}: line {lineno}: not a FASTA file (no '>' header before sequence)")
                else:
                    parts.append(line)
            if name is not None:
                yield name, _checked(path, name, "".join(parts), validate)
                n_records += 1
    except UnicodeDecodeError as exc:
        raise DnahnetError(f"{path}: not a text FASTA file ({exc.reason})") from None
    except (EOFError, OSError, zlib.error) as exc:  # zlib.error: a corrupt gzip stream is not an OSError
        if isinstance(exc, DnahnetError):
            raise
        raise DnahnetError(f"{path}: cannot read FASTA ({exc})") from None
    if n_records == 0:
        raise DnahnetError(f"{path}: empty FASTA (no records)")


def _checked(path: str | os.PathLike, name: str, seq: str, validate: bool) -> str:
    if validate:
        try:
            encode(seq)
        except AlphabetError as exc:
            hint = " (is this a protein FASTA?)" if exc.char.upper() in "EFILPQZ*" else ""
            raise DnahnetError(f"{path}: record {name}: {exc}{hint}") from None
    return seq
