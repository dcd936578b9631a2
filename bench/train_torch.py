#!/usr/bin/env python3
"""PyTorch peer of the training benchmark: images/s of full training steps on the CPU.

A step is forward, cross-entropy on random labels, backward and an AdamW update, at
224x224 with batch 8 by default; the model is the independent reference
(../shared/tools/reference.py). Prints one JSON line. Not part of `npm test`.

Set-up (not CI): Debian's torch, run with the system Python:
  apt-get install -y python3-torch
  /usr/bin/python3 bench/train_torch.py [--arch plain|pyramid] [--size S|B|L] [--steps N | --seconds S]
      [--threads N] [--batch 8] [--image 224] [--warmup 2] [--reference PATH]
      [--dim D --depth N --heads H --patch P]              (plain, override the preset)
      [--dims a,b,c,d --depths a,b,c,d --heads a,b,c,d]     (pyramid, override the preset)
      [--classes 1000]

The BLAS under Debian's torch is OpenBLAS, which picks its kernels from the CPU
it detects; OPENBLAS_CORETYPE=SkylakeX forces the AVX-512 ones. The "blas" field
says which it used.
"""
import argparse
import ctypes
import importlib.util
import json
import os
import re
import resource
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def int_list(text):
    return tuple(int(v) for v in text.split(","))


def parse_args():
    ap = argparse.ArgumentParser(description="PyTorch training-step benchmark (VisionLLaMA reference model)")
    ap.add_argument("--reference", default=os.path.join(REPO, "..", "shared", "tools", "reference.py"),
                    help="reference.py defining PlainVisionLLaMA and PyramidVisionLLaMA")
    ap.add_argument("--arch", choices=["plain", "pyramid"], default="plain")
    ap.add_argument("--size", choices=["S", "B", "L"], default="S", help="preset from reference.py's PLAIN / PYRAMID tables")
    ap.add_argument("--dim", type=int, help="plain: embedding width")
    ap.add_argument("--depth", type=int, help="plain: number of blocks")
    ap.add_argument("--heads", type=int_list, help="plain: heads; pyramid: heads per stage, comma-separated")
    ap.add_argument("--patch", type=int, help="patch size (plain: default 16; pyramid: first-stage stride, default 4)")
    ap.add_argument("--dims", type=int_list, help="pyramid: widths per stage, comma-separated")
    ap.add_argument("--depths", type=int_list, help="pyramid: blocks per stage, comma-separated")
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--image", type=int, default=224, help="square input resolution")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (allocator, packing, caches)")
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--steps", type=int, help="timed steps (default 10)")
    group.add_argument("--seconds", type=float, help="time steps until this many seconds have passed (at least one)")
    a = ap.parse_args()
    for name in ("classes", "image", "batch", "threads"):
        if getattr(a, name) < 1:
            ap.error(f"--{name} must be >= 1")
    if a.warmup < 0:
        ap.error("--warmup must be >= 0")
    if a.steps is not None and a.steps < 1:
        ap.error("--steps must be >= 1")
    if a.seconds is not None and a.seconds <= 0:
        ap.error("--seconds must be > 0")
    return a, ap


def load_reference(path, ap):
    if not os.path.isfile(path):
        ap.error(f"reference model not found at {path}; pass --reference PATH/TO/reference.py")
    spec = importlib.util.spec_from_file_location("reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_model(R, a, ap):
    if a.arch == "plain":
        if a.dims or a.depths:
            ap.error("--dims/--depths are for --arch pyramid; plain takes --dim/--depth")
        cfg = dict(R.PLAIN[a.size])
        if a.dim is not None:
            cfg["dim"] = a.dim
        if a.depth is not None:
            cfg["depth"] = a.depth
        if a.heads is not None:
            if len(a.heads) != 1:
                ap.error("--heads takes one number for --arch plain")
            cfg["heads"] = a.heads[0]
        cfg["patch"] = a.patch or 16
        if cfg["dim"] % cfg["heads"]:
            ap.error(f"dim {cfg['dim']} is not a multiple of heads {cfg['heads']}")
        if a.image % cfg["patch"]:
            ap.error(f"--image {a.image} is not a multiple of the patch size {cfg['patch']}")
        name = f"plain-{a.size}" if (a.dim, a.depth, a.heads, a.patch) == (None, None, None, None) else "plain-custom"
        return R.PlainVisionLLaMA(num_classes=a.classes, **cfg), name, cfg
    if a.dim or a.depth:
        ap.error("--dim/--depth are for --arch plain; pyramid takes --dims/--depths")
    cfg = {k: tuple(v) for k, v in R.PYRAMID[a.size].items()}
    for key in ("dims", "depths", "heads"):
        if getattr(a, key) is not None:
            cfg[key] = getattr(a, key)
    if len({len(cfg["dims"]), len(cfg["depths"]), len(cfg["heads"])}) != 1 or len(cfg["dims"]) != 4:
        ap.error("--dims, --depths and --heads need four comma-separated values each (one per stage)")
    cfg["patch"] = a.patch or 4
    name = f"pyramid-{a.size}" if (a.dims, a.depths, a.heads, a.patch) == (None, None, None, None) else "pyramid-custom"
    return R.PyramidVisionLLaMA(num_classes=a.classes, **cfg), name, {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}


def openblas():
    """The OpenBLAS that torch loaded (Debian links torch to the system BLAS), or None."""
    with open("/proc/self/maps") as f:
        paths = sorted(set(re.findall(r"/\S*libopenblas\S*\.so\S*", f.read())))
    if not paths:
        return None
    try:
        lib = ctypes.CDLL(paths[0])
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib
    except (OSError, AttributeError):
        return None


def main():
    a, ap = parse_args()
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(a.threads)
    blas = openblas()
    if blas is not None:
        # torch sets its OpenMP pool only; OpenBLAS has its own thread count.
        blas.openblas_set_num_threads(a.threads)
    R = load_reference(a.reference, ap)
    torch.manual_seed(0)
    model, name, cfg = build_model(R, a, ap)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.05)
    x = torch.randn(a.batch, 3, a.image, a.image)
    y = torch.randint(0, a.classes, (a.batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    times = []
    losses = []
    target = a.steps if a.steps is not None else (None if a.seconds is not None else 10)
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t0)
        if target is not None and len(times) >= target:
            break
        if target is None and time.perf_counter() - start >= a.seconds:
            break
    ms = 1000.0 * sum(times) / len(times)
    row = {
        "framework": "pytorch",
        "torch": torch.__version__,
        "threads": a.threads,
        "batch": a.batch,
        "img_per_s": round(a.batch * 1000.0 / ms, 3),
        "ms_per_step": round(ms, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),  # Linux: KiB
        "ms_per_step_best": round(1000.0 * min(times), 2),
        "steps": len(times),
        "model": name,
        "config": cfg,
        "image": a.image,
        "params": sum(p.numel() for p in model.parameters()),
        "blas": f"OpenBLAS {blas.openblas_get_corename().decode()}" if blas is not None else None,
        "final_loss": round(losses[-1], 4),
    }
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    sys.exit(main())
