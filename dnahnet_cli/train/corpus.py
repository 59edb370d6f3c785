"""Training data: FASTA corpus -> memory-mapped token cache -> fixed windows -> deterministic batches.

Policy (also in docs/training.md):
  * Inputs are FASTA / FASTA.gz files or directories (searched recursively for *.fa, *.fasta, *.fna, ...
    optionally gzipped). Every record of every file is used.
  * Each file is encoded once to a uint8 token cache (1 byte per base) in `cache_dir`, keyed by the file's
    resolved path, size and mtime, so a corpus larger than RAM is only ever memory-mapped. A cache is
    written atomically (temp file + rename), so concurrent or interrupted builds never leave a broken one.
  * Letters: lowercase (soft-masked) is read as uppercase, U as T, N and IUPAC ambiguity codes as N. N is
    context only: never a prediction target. Any other letter is an error naming the file and record.
  * A record is cut into non-overlapping windows of `seq_len - 1` nucleotides (the model input is BOS +
    window, i.e. `seq_len` tokens); no window crosses a record boundary. Records shorter than `min_length`
    and record tails shorter than `min(min_length, seq_len - 1)` are dropped; windows with more than
    `max_n_frac` N are dropped (assembly gaps teach nothing). Short tails that are kept are right-padded.
  * Order: epoch e visits every window once in the permutation drawn from (seed, e); each visit is
    reverse-complemented with probability `rc_prob`, also drawn from (seed, e). A batch is therefore a pure
    function of (seed, global sample counter), which makes resuming exact and makes the global batch
    independent of how it is split over ranks, micro-batches and processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from dnahnet_cli.genomics.genome import sniff_fasta
from dnahnet_cli.genomics.alphabet import BOS, N, PAD, AlphabetError, encode, reverse_complement_ids
from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.genomics.fasta import iter_fasta
from dnahnet_cli.genomics.fileio import atomic_output

CACHE_VERSION = 1
FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".ffn", ".frn", ".fas", ".fsa", ".seq")
WINDOW_DTYPE = np.dtype([("file", "<i4"), ("start", "<i8"), ("length", "<i4")])


def _is_fasta_name(p: Path) -> bool:
    name = p.name.lower()
    for gz in (".gz", ".bgz"):
        if name.endswith(gz):
            name = name[: -len(gz)]
    return name.endswith(FASTA_SUFFIXES)


def _walk_files(root: Path) -> Iterator[Path]:
    """Files under `root`, following symlinked folders (a corpus assembled from links) but never one twice,
    so a link back up the tree cannot loop. Path.rglob skips symlinked folders in Python 3.11."""
    seen: set[Path] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = Path(folder).resolve()
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        for name in files:
            f = Path(folder) / name
            if f.is_file():
                yield f


def discover_fasta(paths: Sequence[str | os.PathLike], what: str = "--data") -> list[Path]:
    """Expand files and directories into a sorted, de-duplicated list of FASTA files."""
    if not paths:
        raise DnahnetError(f"{what}: no input given")
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise DnahnetError(f"{what}: file not found: {p}")
        if p.is_dir():
            found = sorted(f for f in _walk_files(p) if _is_fasta_name(f))
            if not found:
                raise DnahnetError(f"{what}: no FASTA files (*.fa, *.fasta, *.fna, optionally .gz) in directory {p}")
        elif p.is_file():
            found = [p]
        else:
            raise DnahnetError(f"{what}: not a file or directory: {p}")
        for f in found:  # empty or not FASTA at all: one line now, before any cache or run directory is written
            if f.stat().st_size == 0:
                raise DnahnetError(f"{what}: {f}: empty FASTA (no records)")
            try:
                sniff_fasta(f)
            except DnahnetError as exc:
                raise DnahnetError(f"{what}: {exc}") from None
            out.append(f)
    seen: set[Path] = set()
    return [f for f in out if not (f.resolve() in seen or seen.add(f.resolve()))]


@dataclass
class EncodedFile:
    """One FASTA file as a read-only memory-mapped uint8 token array plus its record table."""

    source: Path
    tokens: np.ndarray
    names: list[str]
    offsets: np.ndarray  # int64 start of each record in `tokens`
    lengths: np.ndarray  # int64 length of each record


def cache_key(path: Path) -> str:
    """Key a cache by what identifies a file's content cheaply: resolved path, size and mtime."""
    st = path.stat()
    raw = f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0v{CACHE_VERSION}"
    return hashlib.sha1(raw.encode()).hexdigest()[:20]


def _stem(path: Path) -> str:
    name = path.name
    for suf in (".gz", ".bgz"):
        name = name.removesuffix(suf)
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:60]


def _cache_folder(cache_dir: Path, writing: bool = False) -> None:
    """The corpus cache folder, created, and writable when something must be written there; else a one-line error
    naming it (not a PermissionError traceback). A read-only cache that holds everything needed is fine."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DnahnetError(f"--cache-dir {cache_dir}: cannot create it ({exc.strerror})") from None
    if writing and not os.access(cache_dir, os.W_OK | os.X_OK):
        raise DnahnetError(f"--cache-dir {cache_dir}: not writable, and the corpus is not cached there yet (give a "
                           "folder of your own with --cache-dir)")


def _read_windows(wpath: Path) -> tuple[np.ndarray, "WindowStats"] | None:
    """A cached window table, or None when the file is damaged (it is then rebuilt)."""
    try:
        with np.load(wpath) as z:
            return z["windows"], WindowStats(**json.loads(str(z["stats"])))
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError):
        return None


def encode_file(path: Path, cache_dir: Path, log: Callable[[str], None] | None = None) -> EncodedFile:
    """Return the cached encoding of `path`, building it (streaming, record by record) if missing."""
    _cache_folder(cache_dir)
    base = f"{_stem(path)}.{cache_key(path)}"
    tok_path, idx_path = cache_dir / f"{base}.u8", cache_dir / f"{base}.json"
    if not idx_path.exists():
        _cache_folder(cache_dir, writing=True)
        if log:
            log(f"encoding {path} -> {tok_path}")
        names, offsets, lengths = [], [], []
        fd, tmp = tempfile.mkstemp(prefix=f".{tok_path.name}.", suffix=".tmp", dir=cache_dir)
        try:
            with os.fdopen(fd, "wb") as fh:
                pos = 0
                for name, seq in iter_fasta(path, validate=False):
                    try:
                        ids = encode(seq)
                    except AlphabetError as exc:
                        hint = " (is this a protein FASTA?)" if exc.char.upper() in "EFILPQZ*" else ""
                        raise DnahnetError(f"{path}: record {name}: {exc}{hint}") from None
                    fh.write(ids.tobytes())
                    names.append(name), offsets.append(pos), lengths.append(len(ids))
                    pos += len(ids)
            os.chmod(tmp, 0o644)  # caches may be shared between users of a cluster
            os.replace(tmp, tok_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        meta = {"version": CACHE_VERSION, "source": str(path.resolve()), "n_tokens": int(pos),
                "names": names, "offsets": offsets, "lengths": lengths}
        with atomic_output(idx_path) as fh:  # written last: its presence marks a complete cache
            json.dump(meta, fh)
        os.chmod(idx_path, 0o644)
    try:
        meta = json.loads(idx_path.read_text())
        n_tokens = int(meta["n_tokens"])
        damaged = not tok_path.exists() or tok_path.stat().st_size != n_tokens
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):  # a truncated or foreign index
        damaged = True
    if damaged:  # e.g. a deleted token file or a cut index: rebuild once
        idx_path.unlink(missing_ok=True)
        return encode_file(path, cache_dir, log)
    tokens = np.memmap(tok_path, dtype=np.uint8, mode="r") if n_tokens else np.zeros(0, np.uint8)
    return EncodedFile(path, tokens, meta["names"], np.asarray(meta["offsets"], np.int64),
                       np.asarray(meta["lengths"], np.int64))


@dataclass
class WindowStats:
    """What the windowing policy kept and dropped (reported at startup)."""

    files: int = 0
    records: int = 0
    bases: int = 0
    short_records: int = 0
    dropped_tails: int = 0
    dropped_n: int = 0
    windows: int = 0
    window_bases: int = 0

    def add(self, other: "WindowStats") -> None:
        for k in self.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(other, k))


def file_windows(ef: EncodedFile, seq_len: int, min_length: int, max_n_frac: float) -> tuple[np.ndarray, WindowStats]:
    """Non-overlapping windows (start, length) inside each record of one encoded file."""
    w = seq_len - 1
    min_tail = min(min_length, w)
    st = WindowStats(files=1, records=len(ef.names), bases=int(ef.lengths.sum()))
    parts = []
    for off, n in zip(ef.offsets.tolist(), ef.lengths.tolist()):
        if n < min_length or n == 0:
            st.short_records += 1
            continue
        starts = np.arange(0, n, w, dtype=np.int64)
        lens = np.minimum(w, n - starts)
        keep = lens >= min_tail
        st.dropped_tails += int((~keep).sum())
        n_count = np.add.reduceat((np.asarray(ef.tokens[off:off + n]) == N).astype(np.int64), starts)
        ok_n = n_count / lens <= max_n_frac  # the fraction itself: 0.57 * 100 is 56.99999999999999 in floats
        st.dropped_n += int((keep & ~ok_n).sum())
        keep &= ok_n
        rec = np.zeros(int(keep.sum()), WINDOW_DTYPE)
        rec["start"], rec["length"] = starts[keep] + off, lens[keep]
        parts.append(rec)
    win = np.concatenate(parts) if parts else np.zeros(0, WINDOW_DTYPE)
    st.windows, st.window_bases = len(win), int(win["length"].sum())
    return win, st


class Corpus:
    """All windows of a set of FASTA files, addressable by index; tokens stay memory-mapped."""

    def __init__(self, files: list[EncodedFile], windows: np.ndarray, stats: WindowStats, seq_len: int):
        self.files, self.windows, self.stats, self.seq_len = files, windows, stats, seq_len

    def __len__(self) -> int:
        return len(self.windows)

    def window(self, i: int, rc: bool = False) -> np.ndarray:
        f, s, n = self.windows[i]
        ids = np.asarray(self.files[f].tokens[s:s + n])
        return reverse_complement_ids(ids) if rc else ids

    def batch(self, idx: Sequence[int], rc: Sequence[bool] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """BOS + window per row, right-padded with PAD to the longest row; mask is None when nothing is padded."""
        rows = [self.window(int(i), bool(rc[k]) if rc is not None else False) for k, i in enumerate(idx)]
        L = 1 + max(len(r) for r in rows)
        ids = np.full((len(rows), L), PAD, dtype=np.int64)
        ids[:, 0] = BOS
        for k, r in enumerate(rows):
            ids[k, 1:1 + len(r)] = r
        t = torch.from_numpy(ids)
        full = all(len(r) == L - 1 for r in rows)
        return t, (None if full else t != PAD)

    def fingerprint(self) -> dict:
        """Enough to notice on resume that the data changed under a run."""
        return {"files": [str(f.source.resolve()) for f in self.files], "windows": len(self),
                "bases": self.stats.window_bases}


def open_corpus(paths: Sequence[str | os.PathLike], cache_dir: str | os.PathLike, seq_len: int,
                min_length: int = 64, max_n_frac: float = 0.5, what: str = "--data",
                log: Callable[[str], None] | None = None) -> Corpus:
    """Discover, encode (cached) and window a FASTA corpus."""
    if seq_len < 2:
        raise DnahnetError(f"--seq-len must be at least 2 (BOS + 1 nucleotide), got {seq_len}")
    if not 0.0 <= max_n_frac <= 1.0:
        raise DnahnetError(f"max_n_frac must be in [0, 1], got {max_n_frac}")
    cache = Path(cache_dir)
    files, wins, stats = [], [], WindowStats()
    for fi, path in enumerate(discover_fasta(paths, what)):
        ef = encode_file(path, cache, log)
        # repr: :g would round; v2: windows at exactly max_n_frac are kept (v1 dropped some of them)
        wpath = cache / f"{_stem(path)}.{cache_key(path)}.w{seq_len}-m{min_length}-n{max_n_frac!r}.v2.npz"
        cached = _read_windows(wpath) if wpath.exists() else None
        if cached is not None:
            win, st = cached
        else:
            win, st = file_windows(ef, seq_len, min_length, max_n_frac)
            _cache_folder(cache, writing=True)
            with atomic_output(wpath, "wb") as fh:
                np.savez(fh, windows=win, stats=np.array(json.dumps(st.__dict__)))
        win = win.copy()
        win["file"] = fi
        files.append(ef), wins.append(win), stats.add(st)
    windows = np.concatenate(wins)
    if len(windows) == 0:
        raise DnahnetError(f"{what}: no training windows: every record is shorter than min_length={min_length} "
                           f"or mostly N ({stats.records} records, {stats.bases} bases)")
    return Corpus(files, windows, stats, seq_len)


class WindowSampler:
    """Maps a global sample counter to (window index, reverse-complement flag), epoch by epoch."""

    def __init__(self, n_windows: int, seed: int, rc_prob: float = 0.5):
        self.n, self.seed, self.rc_prob = n_windows, seed, rc_prob
        self._epoch, self._perm, self._rc = -1, np.zeros(0, np.int64), np.zeros(0, bool)

    def _load(self, epoch: int) -> None:
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._perm = rng.permutation(self.n)
            self._rc = rng.random(self.n) < self.rc_prob
            self._epoch = epoch

    def take(self, start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Samples start .. start+count-1 of the infinite, epoch-wise shuffled stream."""
        idx, rc = np.empty(count, np.int64), np.empty(count, bool)
        for k, i in enumerate(range(start, start + count)):
            self._load(i // self.n)
            idx[k], rc[k] = self._perm[i % self.n], self._rc[i % self.n]
        return idx, rc


@dataclass
class ShardedLoader:
    """Splits each global batch of `batch_size * accum * world` samples over micro-batches and ranks.

    Rows of global step s are samples [s*G, (s+1)*G); micro-batch m of rank r takes the block
    (m*world + r)*batch_size. One process with accum=k and batch b sees exactly the micro-batches that
    k ranks with accum=1 see, which is what makes DDP runs comparable with single-process runs.
    """

    corpus: Corpus
    sampler: WindowSampler
    batch_size: int
    accum: int = 1
    rank: int = 0
    world: int = 1
    stats: dict = field(default_factory=dict)

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.accum * self.world

    def micro_batches(self, consumed: int) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """The accum micro-batches of this rank for the global batch starting at sample `consumed`."""
        out = []
        for m in range(self.accum):
            start = consumed + (m * self.world + self.rank) * self.batch_size
            idx, rc = self.sampler.take(start, self.batch_size)
            out.append(self.corpus.batch(idx, rc))
        return out


class BatchPrefetcher:
    """Prepares the next step's micro-batches on a worker thread while the current step computes. The loader is a
    pure function of the sample counter, so what is prefetched never changes what a step sees, nor what a resumed
    run sees; a request for another position (the first step, a resume) is simply computed on the spot."""

    def __init__(self, loader: ShardedLoader):
        self.loader = loader
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dnahnet-batches")
        self._pending: tuple[int, Future] | None = None

    def get(self, consumed: int) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """The micro-batches at sample `consumed`, then starts preparing those of the step after it."""
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] == consumed:
            batches = pending[1].result()
        else:
            if pending is not None:
                pending[1].result()  # the worker owns the sampler's epoch cache until it is done
            batches = self.loader.micro_batches(consumed)
        following = consumed + self.loader.global_batch
        self._pending = (following, self._pool.submit(self.loader.micro_batches, following))
        return batches

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def val_indices(n_windows: int, k: int) -> np.ndarray:
    """k windows spread evenly over the validation corpus (k <= 0: all), fixed for the whole run."""
    if k <= 0 or k >= n_windows:
        return np.arange(n_windows)
    return np.unique(np.linspace(0, n_windows - 1, k).round().astype(np.int64))


def stderr_log(msg: str) -> None:
    sys.stderr.write(f"dnahnet train: {msg}\n")
