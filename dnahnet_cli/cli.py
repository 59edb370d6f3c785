"""The `dnahnet` command: a Typer app whose subcommands live in dnahnet_cli/commands/.

Each module in COMMAND_MODULES defines `register(app)`. `main()` turns user mistakes (DnahnetError)
into a one-line message with exit code 2, runtime failures into exit code 1, Ctrl-C into 130 and a
closed pipe (`dnahnet ... | head`) into a quiet exit.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import signal
import sys
from typing import Optional

import typer

from dnahnet_cli import __version__
from dnahnet_cli.errors import DnahnetError, DnahnetRuntimeError


class _ClosedOutput:
    """sys.stdout of a process started with its standard output closed (`>&-`): data sent there is an error,
    not a silent loss. Commands refuse an output of '-' before any work (fileio.check_outputs); `-o FILE` needs no
    stdout and works; what else reaches here (help, `info`) ends with one line saying why."""

    encoding = "utf-8"
    closed_at_start = True

    def write(self, text: str) -> int:
        raise DnahnetRuntimeError("standard output is closed (the command was started with >&-): nowhere to "
                                  "write this")

    def writelines(self, lines) -> None:
        self.write("")

    @property
    def buffer(self):
        self.write("")

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def _reopen_closed_standard_streams() -> None:
    """A job started with stdin, stdout or stderr closed (a daemon, `exec >&-`) has no file descriptor 0, 1 or 2:
    point each at /dev/null first, or the next file opened (an output) would take its number and receive whatever
    a library prints there. Messages for a closed stderr are dropped; data for a closed stdout is an error."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
            continue
        except OSError:
            null = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        if name == "stdout":
            sys.stdout = _ClosedOutput()  # type: ignore[assignment]
        elif getattr(sys, name) is None:
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", closefd=False))


_reopen_closed_standard_streams()  # before the command modules import (they look at sys.stdout)

COMMAND_MODULES = [
    "dnahnet_cli.commands.model_cmds",
    "dnahnet_cli.commands.score_variants",
    "dnahnet_cli.commands.segment_cmd",
    "dnahnet_cli.commands.train_cmd",
    "dnahnet_cli.commands.essentiality_cmd",
    "dnahnet_cli.commands.eval_cmd",
    "dnahnet_cli.commands.check_cmd",
    "dnahnet_cli.commands.embed_cmd",
]

def _tidy_help() -> None:
    """Help in the usual Unix style: flags show no `<bool>` type, arguments show as REF, VCF (typer 0.29
    renders `{ref}` and `<bool>`)."""
    from typer import core

    flag_type = core.TyperOption.display_type_rich
    core.TyperOption.display_type_rich = lambda self, ctx: None if self.is_flag else flag_type(self, ctx)
    core.TyperArgument.display_type_rich = lambda self, ctx: None

    def usage_name(self) -> str:
        name = self.display_name_raw.upper()
        name = name if self.required else f"[{name}]"
        return name + ("..." if self.nargs != 1 else "")

    core.TyperArgument._usage_display_name = usage_name


_tidy_help()

app = typer.Typer(
    name="dnahnet",
    help="Tokenizer-free hierarchical DNA language modelling (dnaHNet): train, score variants, "
    "predict gene essentiality and segment genomes.\n\n"
    "Example: dnahnet score-variants ref.fa.gz calls.vcf.gz -o scores.vcf.gz  (dnahnet COMMAND --help for more)",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"dnahnet {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
    threads: Optional[int] = typer.Option(
        None, "--threads", envvar="DNAHNET_THREADS", min=1,
        help="CPU threads for PyTorch (default: the cores this process may run on, os.sched_getaffinity).",
    ),
    kernels: str = typer.Option(
        "auto", "--kernels", envvar="DNAHNET_KERNELS",
        help="Kernels: auto (CPU: compiled C kernels for the Mamba2 mixer in scoring and training and for attention "
        "in scoring, built once with the system C compiler, and padded projection GEMMs; GPU: mamba-ssm/causal-conv1d/flash-attn when "
        "installed), torch (plain PyTorch reference everywhere) or fast (require the GPU kernels).",
    ),
) -> None:
    """dnahnet command-line interface."""
    # torch reads OMP_NUM_THREADS when it starts: setting it here keeps torch out of `--help` and usage errors
    if threads:
        os.environ["DNAHNET_THREADS"] = str(threads)  # an explicit choice: `train` lets it win over its config
    if threads or not os.environ.get("OMP_NUM_THREADS", "").strip():  # unset or empty: the usable cores
        os.environ["OMP_NUM_THREADS"] = str(threads or usable_cores())
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    from dnahnet_cli.model import KERNEL_MODES
    from dnahnet_cli.model.allocator import keep_freed_memory
    from dnahnet_cli.model.openmp import short_spin

    keep_freed_memory()  # before any tensor exists: the pages of one forward are reused by the next
    short_spin()  # before torch loads its OpenMP runtime: idle workers leave the cores to the compiled kernels

    # help and the commands that run no model (presets, init, info: `info --device` diagnoses a missing kernel)
    # work whatever the kernels; a cluster profile may export DNAHNET_KERNELS=fast for its GPU nodes only
    runs_model = ctx.invoked_subcommand not in (None, "presets", "init", "info") and not _asks_for_help()
    source = ctx.get_parameter_source("kernels")
    from_env = source is not None and source.name == "ENVIRONMENT"  # errors name what the user actually set
    if kernels not in KERNEL_MODES:
        if from_env and not runs_model:
            kernels = "auto"
        else:
            given = f"DNAHNET_KERNELS={kernels!r} (the environment)" if from_env else f"--kernels {kernels!r}"
            raise DnahnetError(f"invalid {given} (choose {', '.join(KERNEL_MODES)})")
    os.environ["DNAHNET_KERNELS"] = kernels  # read by model/kernels.py when (and if) the model is loaded
    if (kernels == "fast" and runs_model) or "dnahnet_cli.model.kernels" in sys.modules:
        from dnahnet_cli.model.kernels import set_kernels  # "fast" checks for CUDA and mamba-ssm now

        try:
            set_kernels(kernels if runs_model else "auto")
        except DnahnetError as exc:
            if from_env:
                raise DnahnetError(str(exc).replace("--kernels fast", "DNAHNET_KERNELS=fast (the environment)")) \
                    from None
            raise


def _asks_for_help() -> bool:
    """Whether the command line asks for a help page (`dnahnet CMD --help`): the root callback runs first."""
    return any(arg in ("-h", "--help") for arg in sys.argv[1:])


for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


class _Terminated(BaseException):
    """SIGTERM, raised where the program is so that atomic outputs unwind and remove their temporary files."""


def _terminated(signum, frame) -> None:
    raise _Terminated()


def _interrupted(code: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the message
    commands = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    command = next((arg for arg in sys.argv[1:] if arg in commands), None)
    if command == "train":  # its checkpoints are outputs in their own right, written as it went
        sys.stderr.write("dnahnet: interrupted; checkpoints already written are kept (continue with --resume), "
                         "the final model was not written\n")
    else:
        sys.stderr.write("dnahnet: interrupted; no output written\n")
    sys.exit(code)


def usable_cores() -> int:
    """Cores this process may use (CPU affinity / cgroup cpusets), not the machine's total."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _stdout_is_devnull() -> bool:
    try:
        return os.path.samestat(os.fstat(1), os.stat(os.devnull))
    except OSError:
        return False


def err(message: str) -> None:
    """One-line error on stderr."""
    sys.stderr.write(f"dnahnet: error: {message}\n")


def main() -> None:
    """Console-script entry point."""
    try:
        _main()
    finally:
        # Outputs are committed (or removed) by now; a signal during interpreter exit (atexit joins of worker
        # threads) must end the process like the signal would, not print "Exception ignored in atexit".
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)


def _main() -> None:
    # `dnahnet ... | head`: SIGPIPE stays ignored (Python's default), so the write raises BrokenPipeError, which
    # unwinds like SIGTERM (e.g. a Snakemake/SLURM cancel) does: atomic outputs being written to files remove
    # their temporary files, and the process then exits quietly with the shell's SIGPIPE status, 141.
    signal.signal(signal.SIGTERM, _terminated)
    # Ctrl-C even when started with SIGINT ignored (a background job of a script, some workflow engines)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    stdout_was_null = _stdout_is_devnull()
    for stream in (sys.stdout, sys.stderr):  # a file name that is not valid UTF-8 (or not ASCII under LC_ALL=C)
        with contextlib.suppress(AttributeError, ValueError):  # goes out as its bytes, not as a UnicodeEncodeError
            stream.reconfigure(errors="surrogateescape" if stream is sys.stdout else "backslashreplace")
    try:
        code = app(standalone_mode=False)
        sys.stdout.flush()  # here, where a reader that went away (EPIPE) is answered below, not at interpreter exit
        if code == 130:  # typer turns KeyboardInterrupt into Exit(130) and returns it in this mode
            _interrupted(130)
        if isinstance(code, int) and code:
            sys.exit(code)
    except SystemExit as exc:
        # A closed stdout (EPIPE) is answered with a quiet exit 1 by click (which wraps stdout in its
        # PacifyFlushWrapper) and by rich (help, `presets`, `info`: it points fd 1 at /dev/null first).
        # `| head` is not a failure: exit with the status SIGPIPE would give.
        if exc.code == 1 and (type(sys.stdout).__name__ == "PacifyFlushWrapper"
                              or (not stdout_was_null and _stdout_is_devnull())):
            sys.exit(141)
        raise
    except DnahnetError as exc:
        err(str(exc))
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort as exc:  # typer turns an EOFError escaping a command into Abort
        if isinstance(exc.__cause__, EOFError):
            err(f"unexpected end of input ({exc.__cause__})")
            sys.exit(2)
        _interrupted(130)
    except KeyboardInterrupt:
        _interrupted(130)
    except _Terminated:
        _interrupted(143)
    except BrokenPipeError:
        # The reader went away (`| head`): silence further writes and exit like SIGPIPE would.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(141)
    except Exception as exc:
        # Click usage errors (typer vendors click in recent releases, so match by shape, not class)
        if hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int):
            ctx = getattr(exc, "ctx", None)
            where = f"{ctx.command_path}: " if ctx is not None else ""
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            if getattr(exc, "option_name", None) in ("--threads", "--kernels") and ctx is not None:
                command = " ".join(ctx.command_path.split()[len(ctx.find_root().command_path.split()):])
                hint = f" ({exc.option_name} goes before the command: dnahnet {exc.option_name} ... {command} ...)"
            if exc.format_message():  # `dnahnet` alone printed its help already: no empty error line after it
                err(f"{where}{exc.format_message()}{hint}".replace("\n", " "))  # one line, like every other error
            sys.exit(exc.exit_code)
        if (isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"
                or (isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc))):  # torch's CPU allocator
            err(f"out of memory: {str(exc).splitlines()[0][:200]}; try a smaller --batch-size or --max-tokens")
            sys.exit(1)
        if isinstance(exc, OSError) and exc.errno in _ACCESS_ERRNOS and exc.filename:  # a path the user gave
            err(f"{exc.filename}: {exc.strerror or exc} (check the path and its permissions)")
            sys.exit(2)
        if isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS:  # a full disk or quota is not a bug
            where = f"{exc.filename}: " if exc.filename else ""
            err(f"{where}{exc.strerror or exc} (outputs not written; free space or choose another folder)")
            sys.exit(1)
        raise


# errors of the machine, not of dnahnet or the input: one line, exit 1 (a traceback would suggest a bug)
_RESOURCE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EMFILE, errno.ENFILE, errno.EROFS}
# a file the user named that cannot be opened (an unreadable input, a protected output folder): a usage error
_ACCESS_ERRNOS = {errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG}


if __name__ == "__main__":
    main()
