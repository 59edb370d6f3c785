"""Zero-shot tasks built on the model: the likelihood engine every scoring command goes through
(batching, long-sequence tiling, REF/ALT prefix reuse, boundary tracks), gene essentiality by premature
stops, deep-mutational-scan evaluation, learned segmentation (and its report against an annotation),
classification/ranking metrics and the installation self-check.

Tasks may import `genomics` and `model`, never `train` or `commands`; they take already-parsed inputs
and return results, leaving argument parsing, progress lines and output files to `commands`.
"""
