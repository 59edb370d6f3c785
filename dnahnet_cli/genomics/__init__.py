"""Genomics I/O: the nucleotide alphabet, FASTA/BGZF genomes, GFF3 annotations, VCF variants, and the
TSV/BED/bedGraph/VCF writers with their provenance headers.

Everything here is about files and sequences and knows nothing of the model: it imports only the standard
library, numpy, pysam and `dnahnet_cli.errors` (plus `dnahnet_cli.__version__` for output headers).
torch is imported only inside the alphabet's tensor helpers. The layers above (model, tasks, train, commands)
may import from here; nothing here imports from them.
"""
