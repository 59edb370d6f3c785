"""Pretraining: the memory-mapped window corpus with its deterministic, resumable sampling (`corpus`), the
options and their checks (`config`), checkpoints without pickle (`checkpoints`), the torchrun process group
(`distributed`), and the training loop with AdamW, schedules, ratio-loss ramp, evaluation and exact resume
(`trainer`).

May import `genomics` and `model`, never `tasks` or `commands`.
"""
