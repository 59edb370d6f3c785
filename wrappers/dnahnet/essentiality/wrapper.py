"""Snakemake wrapper for `dnahnet essentiality` (zero-shot gene essentiality from premature-stop knock-outs)."""

__author__ = "dnahnet developers"
__license__ = "MIT"

from shlex import quote

from snakemake.shell import shell

# snakemake.log_fmt_shell does not quote the path: a log name with a space split the command
log = f"2> {quote(str(snakemake.log[0]))}" if snakemake.log else ""
extra = snakemake.params.get("extra", "")
model = snakemake.params.get("model", "")
model = f"--model {quote(str(model))}" if model else ""
labels = f"--labels {quote(str(snakemake.input.labels))}" if snakemake.input.get("labels") else ""
metrics = f"--metrics {quote(str(snakemake.output.metrics))}" if snakemake.output.get("metrics") else ""
bed = f"--bed {quote(str(snakemake.output.bed))}" if snakemake.output.get("bed") else ""
plot = f"--plot {quote(str(snakemake.output.plot))}" if snakemake.output.get("plot") else ""

shell(
    "dnahnet --threads {snakemake.threads} essentiality {snakemake.input.genome:q} --gff {snakemake.input.gff:q}"
    " {labels} {model} {extra} -o {snakemake.output.tsv:q} {metrics} {bed} {plot} {log}"
)
