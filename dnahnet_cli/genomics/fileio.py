"""File helpers shared by every command: '-' for stdin/stdout, gzip by magic bytes, atomic outputs."""

from __future__ import annotations

import contextlib
import contextvars
import gzip
import io
import os
import stat
import sys
import tempfile
import zlib
from pathlib import Path
from typing import IO, Iterator

from dnahnet_cli.errors import DnahnetError

GZIP_MAGIC = b"\x1f\x8b"


def current_umask() -> int:
    """The process's umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """Permissions a plain open() would give a new file (mkstemp uses 0600, too strict for outputs)."""
    return 0o666 & ~current_umask()


def share_like_outputs(directory: str | os.PathLike) -> None:
    """Give a directory built under a temporary name (mkdtemp: 0700) and its files (safetensors writes 0600) the
    permissions the umask gives new outputs, so that a model or checkpoint is readable by the rest of a group or
    cluster like any other output."""
    mask = current_umask()
    root = Path(directory)
    for path in [root, *root.rglob("*")]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


def is_gzip(path: str | os.PathLike) -> bool:
    """True when the file starts with the gzip magic bytes (plain gzip and bgzip alike)."""
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def require_file(path: str | os.PathLike, what: str = "input") -> Path:
    """Fail with a one-line message when an input file is missing or is not a file."""
    p = Path(path)
    if not p.exists():
        raise DnahnetError(f"{what} file not found: {p}")
    if not p.is_file():
        if stat.S_ISFIFO(p.stat().st_mode):  # `<(zcat x.gz)`: inputs are read more than once, which a pipe cannot
            raise DnahnetError(f"{what} is a pipe ({p}), which dnahnet cannot read twice: give a file (gzip and bgzip "
                               "are read directly), or pipe it to '-' (stdin)")
        raise DnahnetError(f"{what} is not a file: {p}")
    if not os.access(p, os.R_OK):
        raise DnahnetError(f"{what} file {p} is not readable (permission denied)")
    return p


def check_one_stdin(inputs: dict[str, str | os.PathLike | None]) -> None:
    """One-line usage error when more than one input is '-': stdin can be read only once."""
    named = [what for what, path in inputs.items() if path is not None and str(path) == "-"]
    if len(named) > 1:
        raise DnahnetError(f"{' and '.join(named)} cannot all be - (stdin can be read only once): give all but one "
                           f"as a file")


@contextlib.contextmanager
def open_text(path: str | os.PathLike, what: str = "input") -> Iterator[IO[str]]:
    """Open a text input, '-' meaning stdin; gzip/bgzip is detected from the magic bytes, and a UTF-8 byte-order
    mark (Excel writes one into CSV files) is dropped."""
    if str(path) == "-":
        buf = sys.stdin.buffer
        head = buf.peek(2)[:2] if hasattr(buf, "peek") else b""
        wrapper = io.TextIOWrapper(gzip.GzipFile(fileobj=buf) if head == GZIP_MAGIC else buf, encoding="utf-8-sig")
        try:
            yield wrapper
        finally:
            with contextlib.suppress(ValueError):  # already closed or detached
                wrapper.detach()  # a collected wrapper would close the process's stdin with it
        return
    p = require_file(path, what)
    if is_gzip(p):
        with gzip.open(p, "rt", encoding="utf-8-sig") as fh:
            yield fh
    else:
        with open(p, "rt", encoding="utf-8-sig") as fh:
            yield fh


@contextlib.contextmanager
def text_input_errors(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Around reading a text input: bytes that are not UTF-8 (a spreadsheet, a binary file) and a truncated gzip
    become one-line errors naming the file."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise DnahnetError(f"{path}: not a text {what} ({exc.reason})") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DnahnetError(f"{path}: truncated or corrupt gzip ({exc})") from None


def check_output_path(path: str | os.PathLike | None, what: str = "output") -> None:
    """One-line error unless `path` can be written: '-' (stdout), or a file in an existing, writable
    directory that is not itself a directory. Commands call it for every output before any work starts."""
    if path is None or str(path) == "-":
        return
    target = Path(path)
    if target.is_dir():
        raise DnahnetError(f"{what} {target}: is a directory (give a file name)")
    if writes_in_place(target):
        return
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise DnahnetError(f"{what} {target}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DnahnetError(f"{what} {target}: directory {parent} is not writable")


INPUT_SIDECARS = ("", ".fai", ".gzi", ".tbi", ".csi")  # an input and the index files read beside it


def check_outputs(named: dict[str, str | os.PathLike | None],
                  inputs: dict[str, str | os.PathLike | None] | None = None) -> None:
    """Every output of a command, by option name, before any work starts: each can be written
    (check_output_path), no two name the same file or are both stdout ('-'), where one would overwrite or
    interleave with the other (e.g. `segment --report x.json` and the report's JSON twin, `-o - --bed -`), and
    none names an input or its index (`-o genome.fa` replaced the genome once the output was renamed into place)."""
    seen: dict[object, str] = {}
    for what, path in (inputs or {}).items():
        if path is not None and str(path) != "-":
            for suffix in INPUT_SIDECARS:
                seen[Path(f"{path}{suffix}").resolve()] = f"the input {what} {path}{suffix}"
    for what, path in named.items():
        if path is None:
            continue
        if str(path) == "-" and getattr(sys.stdout, "closed_at_start", False):  # cli.py: started with `>&-`
            raise DnahnetError(f"{what} is - (standard output), but the command was started with standard output "
                               f"closed (>&-): give {what} FILE")
        check_output_path(path, what)
        key = "stdout" if str(path) == "-" else Path(path).resolve()
        if key in seen:
            raise DnahnetError(f"{what} {path}: the same {'stream' if key == 'stdout' else 'file'} as {seen[key]}; "
                               "give them different names")
        seen[key] = f"{what} {path}"


def writes_in_place(target: Path) -> bool:
    """Whether an output path names an existing FIFO, device or socket (`-o /dev/null`, `-o >(gzip > x)`,
    `-o /dev/stderr`): such a target is written directly; a temporary file renamed over it would replace it."""
    try:
        mode = os.stat(target).st_mode  # follows links: /dev/stdout -> /proc/self/fd/1 -> a pipe or terminal
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Write to a temporary file next to `path` and rename it into place only on success.

    '-' writes to stdout. On any exception the temporary file is removed, so a reader (or Snakemake)
    never sees a half-written output.
    """
    if str(path) == "-":
        stream = sys.stdout.buffer if "b" in mode else sys.stdout
        yield stream
        stream.flush()
        return
    text = {} if "b" in mode else {"encoding": "utf-8", "errors": "surrogateescape"}  # file names in provenance
    with atomic_path(path) as tmp, open(tmp, mode, **text) as fh:  # lines need not be valid UTF-8 (or the locale's)
        yield fh


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Give a temporary path to write to (for libraries that want a filename); renamed on success (inside
    `output_group`, when the whole group has succeeded)."""
    check_output_path(path)
    target = Path(path)
    if writes_in_place(target):  # a pipe or device has no directory entry to rename into: written directly
        yield target
        return
    if target.is_symlink():  # write through the link, as the shell's `>` does, instead of replacing it
        target = Path(os.path.realpath(target))
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, new_file_mode())
        group = _commit_group.get()
        if group is None:
            os.replace(tmp, target)
        else:
            group.append((tmp, target))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


_commit_group: contextvars.ContextVar[list[tuple[str, Path]] | None] = contextvars.ContextVar(
    "dnahnet_commit_group", default=None)


@contextlib.contextmanager
def output_group() -> Iterator[contextlib.ExitStack]:
    """An ExitStack for a command's outputs: enter each output (atomic_output / atomic_path) on it. They stay
    temporary files until every one of them has been closed without an error, then all are renamed into place, so
    a command's outputs (a TSV, its JSON, a plot) appear together or not at all, even when closing the last one
    fails (a full disk flushes late)."""
    group: list[tuple[str, Path]] = []
    token = _commit_group.set(group)
    try:
        with contextlib.ExitStack() as stack:
            yield stack
    except BaseException:
        for tmp, _ in group:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    finally:
        _commit_group.reset(token)
    for tmp, target in group:
        os.replace(tmp, target)
