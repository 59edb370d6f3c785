"""Snakemake wrapper for `dnahnet segment` (the model's learned chunk boundaries as BED, optional report)."""

__author__ = "dnahnet developers"
__license__ = "MIT"

from shlex import quote

from snakemake.shell import shell

# snakemake.log_fmt_shell does not quote the path: a log name with a space split the command
log = f"2> {quote(str(snakemake.log[0]))}" if snakemake.log else ""
extra = snakemake.params.get("extra", "")
model = snakemake.params.get("model", "")
model = f"--model {quote(str(model))}" if model else ""
gff = f"--gff {quote(str(snakemake.input.gff))}" if snakemake.input.get("gff") else ""
report = f"--report {quote(str(snakemake.output.report))}" if snakemake.output.get("report") else ""

shell(
    "dnahnet --threads {snakemake.threads} segment {snakemake.input.genome:q} {gff} {model} {extra}"
    " -o {snakemake.output.bed:q} {report} {log}"
)
