"""Ad-hoc probe that produced the two-thread training throughputs quoted in train-cpu-v11.toml (cpu 11,133 nt/s,
3.66M 9,652, 7.31M 7,200, 12.7M 5,879), kept as it ran: bench/cpu_preset_sizing.time_steps at 8,192 nt, batch 1,
two threads, 4 repetitions after a warm-up, fixed-ratio routers. From the repository root:
    python docs/results/model_card/v11/size_probe.py cpu c2m c4m c8m
"""
import sys, statistics, torch
sys.path.insert(0, "bench")
from dnahnet_cli.model.allocator import keep_freed_memory
from dnahnet_cli.model.openmp import short_spin
keep_freed_memory(); short_spin()
from cpu_preset_sizing import candidate, CANDIDATES, time_steps
from dnahnet_cli.model.presets import get_preset
torch.set_num_threads(2)
for name in sys.argv[1:]:
    cfg = get_preset("cpu") if name == "cpu" else candidate(name, *CANDIDATES[name], 8192)
    from dnahnet_cli.model.lm import DNAHNet
    n = sum(p.numel() for p in DNAHNet(cfg).parameters())
    ts = time_steps(cfg, 8192, 1, 4, torch.bfloat16)
    med = statistics.median(ts)
    print(name, f"{n/1e6:.2f}M params, step {med:.2f}s, {8192/med:,.0f} nt/s, 2 threads", flush=True)
