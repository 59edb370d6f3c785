"""Pretraining: the memory-mapped window corpus with its deterministic, resumable sampling (`corpus`)
and the training loop with AdamW, schedules, ratio-loss ramp, DDP, evaluation and exact resume
(`trainer`).

May import `genomics` and `model`, never `tasks` or `commands`.
"""
