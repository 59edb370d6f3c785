"""The model core: the chunked SSD and EMA scans (`ssd`), the Mamba2/attention blocks (`layers`), the
H-Net stage with routing, chunking and dechunking (`hnet`), the language model and its config (`lm`),
named presets, the analytic FLOP model, safetensors checkpoints, the shipped default model, the precision
and host-memory policies (`precision`, `allocator`), and the optional accelerated kernels that sit behind the
plain-PyTorch reference (`kernels`).

It may import `dnahnet_cli.errors` and `dnahnet_cli.genomics.alphabet` (the vocabulary), never tasks,
train or commands. A new model family (an architecture with `forward(ids, mask, state)` returning
`ModelOutput`) belongs here; docs/architecture.md says how.
"""

KERNEL_MODES = ("auto", "torch", "fast")  # --kernels values (kernels.py); here so the CLI checks them without torch
