"""Snakemake wrapper for `dnahnet score-variants` (log-likelihood ratio of every ALT allele of a VCF)."""

__author__ = "dnahnet developers"
__license__ = "MIT"

from shlex import quote

from snakemake.shell import shell

# snakemake.log_fmt_shell does not quote the path: a log name with a space split the command
log = f"2> {quote(str(snakemake.log[0]))}" if snakemake.log else ""
extra = snakemake.params.get("extra", "")
model = snakemake.params.get("model", "")
model = f"--model {quote(str(model))}" if model else ""  # empty: the reference model shipped with dnahnet

shell(
    "dnahnet --threads {snakemake.threads} score-variants {snakemake.input.ref:q} {snakemake.input.vcf:q}"
    " {model} {extra} -o {snakemake.output[0]:q} {log}"
)
