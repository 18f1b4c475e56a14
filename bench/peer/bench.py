"""PyTorch peer of onedp's benchmark: the same networks and steps, timed on the CPU.

    /usr/bin/python3 bench/peer/bench.py [--quick] [--threads N] [--only id1,id2]

Prints ONE JSON object on stdout, {"torch": ..., "threads": N, "rows": [{"id", "ms", "reps"}]},
with `ms` the median wall-clock time of one call or step; progress goes to stderr. See README.md
for how each id maps to onedp's own benchmark rows.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from unet import ConditionalUnet1D, build, num_parameters  # noqa: E402

HORIZON = 16
OBS_DIM, ACTION_DIM, N_OBS_STEPS, N_ACTION_STEPS = 20, 2, 2, 8
NUM_TRAIN_TIMESTEPS = 100


def log(msg: str) -> None:
    print(f"[peer] {msg}", file=sys.stderr, flush=True)


def time_it(fn: Callable[[], None], warmup: int, reps: int, min_ms: float = 0.0) -> Tuple[float, int]:
    """Median ms of `fn` over at least `reps` calls and `min_ms` ms, after `warmup` calls (bench/harness.ts' timeIt)."""
    for _ in range(warmup):
        fn()
    times: List[float] = []
    start = time.perf_counter()
    while len(times) < reps or (time.perf_counter() - start) * 1000 < min_ms:
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
        if len(times) > 1000:
            break
    return statistics.median(times), len(times)


def unet_inputs(b: int, cfg_cond: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = torch.randn(b, HORIZON, ACTION_DIM)
    c = torch.randn(b, cfg_cond)
    t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (b,))
    return x, t, c


# ---------------------------------------------------------------------------------------------
# Data and schedule, as onedp's ReplayBuffer / SequenceSampler / LinearNormalizer / DDPM.

def pusht_shaped(episodes: int = 50, length: int = 120) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """bench/train.ts' pushtShaped: uniform [0, 512) 20-D observations and 2-D actions."""
    rng = np.random.default_rng(0)
    n = episodes * length
    obs = rng.uniform(0, 512, (n, OBS_DIM)).astype(np.float32)
    act = rng.uniform(0, 512, (n, ACTION_DIM)).astype(np.float32)
    ends = np.arange(1, episodes + 1) * length
    return obs, act, ends


def sequence_windows(ends: np.ndarray, seq_len: int, pad_before: int, pad_after: int) -> np.ndarray:
    """Frame index of every step of every window (edge-padded), (n_windows, seq_len); onedp's SequenceSampler."""
    rows = []
    start = 0
    for end in ends:
        length = int(end) - start
        for idx in range(-pad_before, length - seq_len + pad_after + 1):
            rows.append(start + np.clip(np.arange(idx, idx + seq_len), 0, length - 1))
        start = int(end)
    return np.stack(rows).astype(np.int64)


class MinMaxNormalizer:
    """LinearNormalizer.fit: per-dimension min/max to [-1, 1]."""

    def __init__(self, values: np.ndarray, range_eps: float = 1e-4):
        lo, hi = values.min(0), values.max(0)
        self.scale = np.where(hi - lo < range_eps, 1.0, 2.0 / (hi - lo)).astype(np.float32)
        self.offset = (-1.0 - self.scale * lo).astype(np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x * self.scale + self.offset


class BatchIndices:
    """trainer.ts' batchIndices: a stream of seeded per-epoch permutations of the windows."""

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed, self.epoch, self.perm = n, seed, -1, np.arange(n)

    def __call__(self, batch: int, step: int) -> np.ndarray:
        out = np.empty(batch, dtype=np.int64)
        pos = step * batch
        for i in range(batch):
            e = pos // self.n
            if e != self.epoch:
                self.epoch = e
                self.perm = np.random.default_rng(self.seed * 7919 + e * 104729).permutation(self.n)
            out[i] = self.perm[pos % self.n]
            pos += 1
        return out


class Data:
    def __init__(self) -> None:
        obs, act, ends = pusht_shaped()
        self.obs, self.act = obs, act
        self.windows = sequence_windows(ends, HORIZON, N_OBS_STEPS - 1, N_ACTION_STEPS - 1)
        self.norm_obs, self.norm_act = MinMaxNormalizer(obs), MinMaxNormalizer(act)
        self.indices = BatchIndices(len(self.windows))

    def batch(self, b: int, step: int, actions: bool = True) -> Tuple[torch.Tensor, torch.Tensor | None]:
        """(cond (b, nObsSteps * obsDim), normalised actions (b, horizon, actionDim) or None)."""
        w = self.windows[self.indices(b, step)]
        cond = torch.from_numpy(self.norm_obs(self.obs[w[:, :N_OBS_STEPS]]).reshape(b, -1))
        act = torch.from_numpy(self.norm_act(self.act[w])) if actions else None
        return cond, act


def squaredcos_cap_v2(k: int) -> np.ndarray:
    """alpha_bar of diffusers' squaredcos_cap_v2 betas (float64, as src/diffusion/ddpm.ts)."""
    f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    betas = np.array([min(1 - f((i + 1) / k) / f(i / k), 0.999) for i in range(k)])
    return np.cumprod(1 - betas)


ALPHA_BAR = torch.tensor(squaredcos_cap_v2(NUM_TRAIN_TIMESTEPS), dtype=torch.float32)


def add_noise(x0: torch.Tensor, eps: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    ab = ALPHA_BAR[k].view(-1, 1, 1)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


def cosine_with_warmup(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return step / max(1, warmup)
    p = (step - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1 + math.cos(math.pi * p)))


class Ema:
    """src/train/ema.ts: decay = min(max_decay, 1 - (1 + step)^-power), over all parameters."""

    def __init__(self, model: torch.nn.Module, power: float = 0.75, max_decay: float = 0.9999):
        self.params = list(model.parameters())
        self.shadow = [p.detach().clone() for p in self.params]
        self.power, self.max_decay, self.step = power, max_decay, 0

    @torch.no_grad()
    def update(self) -> None:
        d = min(self.max_decay, max(0.0, 1 - (1 + self.step) ** -self.power))
        for s, p in zip(self.shadow, self.params):
            s.mul_(d).add_(p, alpha=1 - d)
        self.step += 1


# ---------------------------------------------------------------------------------------------
# Benchmarks.

def forward_b1(name: str, quick: bool) -> Tuple[float, int]:
    net = build(name).eval()
    x, t, c = unet_inputs(1, 40)
    log(f"forward B=1, {name} ({num_parameters(net):,} parameters)")

    def f() -> None:
        with torch.no_grad():
            net(x, t, c)

    return time_it(f, warmup=2, reps=20, min_ms=300 if quick else 1000)


def train_b256(quick: bool) -> Tuple[float, int]:
    net = build("4.56M").train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, betas=(0.95, 0.999))
    x, t, c = unet_inputs(256, 40)
    log("train step B=256, 4.56M")

    def f() -> None:
        loss = (net(x, t, c) - x).square().mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        loss.item()

    return time_it(f, warmup=1, reps=3 if quick else 5)


def trainer_b64_recipe(quick: bool) -> Tuple[float, int]:
    b, total_steps, warmup_steps = 64, 5000, 500
    data = Data()
    net = build("recipe").train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6)
    ema = Ema(net, 0.75, 0.9999)
    state = {"step": 0}
    log(f"trainer step B={b}, recipe U-Net ({num_parameters(net):,} parameters, {len(data.windows)} windows)")

    def f() -> None:
        step = state["step"]
        cond, act = data.batch(b, step)
        for g in opt.param_groups:
            g["lr"] = 1e-4 * cosine_with_warmup(step, warmup_steps, total_steps)
        k = torch.randint(0, NUM_TRAIN_TIMESTEPS, (b,))
        eps = torch.randn_like(act)
        loss = F.mse_loss(net(add_noise(act, eps, k), k, cond), eps)
        opt.zero_grad()
        loss.backward()
        v = loss.item()
        if math.isfinite(v):
            opt.step()
        ema.update()
        state["step"] = step + 1

    return time_it(f, warmup=1, reps=6 if quick else 20)


def onedp_s_b32_recipe(quick: bool) -> Tuple[float, int]:
    """One OneDP-S step of src/distill/distill.ts with its defaults and a DDPM teacher."""
    b, steps, t_init, k_min, k_max = 32, 1000, 65, 2, 95
    lr_g, lr_s, betas, ema_cap = 3e-4, 3e-3, (0.0, 0.999), 0.95
    data = Data()
    teacher = build("recipe").eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    gen: ConditionalUnet1D = copy.deepcopy(teacher).train()
    score: ConditionalUnet1D = copy.deepcopy(teacher).train()
    for p in [*gen.parameters(), *score.parameters()]:
        p.requires_grad_(True)
    opt_g = torch.optim.Adam(gen.parameters(), lr=lr_g, betas=betas)
    opt_s = torch.optim.Adam(score.parameters(), lr=lr_s, betas=betas)
    ema = Ema(gen, 0.75, ema_cap)
    ab_init = ALPHA_BAR[t_init]
    t_gen = torch.full((b,), t_init, dtype=torch.long)
    state = {"step": 0}
    log(f"OneDP-S step B={b}, DDPM teacher, recipe U-Net")

    def f() -> None:
        step = state["step"]
        scale = 0.5 * (1 + math.cos(math.pi * step / steps))
        for g in opt_g.param_groups:
            g["lr"] = lr_g * scale
        for g in opt_s.param_groups:
            g["lr"] = lr_s * scale
        cond, _ = data.batch(b, step, actions=False)
        z = torch.randn(b, HORIZON, ACTION_DIM)
        # Generator: A = clip((z - sigma_t eps(z, t_init, O)) / sqrt(abar_t), -1, 1).
        a = ((z - (1 - ab_init).sqrt() * gen(z, t_gen, cond)) / ab_init.sqrt()).clamp(-1, 1)
        a_d = a.detach()
        # 1. Score network: denoising loss on stopgrad(A) at k ~ U{0..99}.
        k = torch.randint(0, NUM_TRAIN_TIMESTEPS, (b,))
        e = torch.randn_like(a_d)
        s_loss = F.mse_loss(score(add_noise(a_d, e, k), k, cond), e)
        opt_s.zero_grad()
        s_loss.backward()
        opt_s.step()
        s_loss.item()
        # 2. Generator: g = sigma_k (eps_teacher - eps_score) at A diffused to k ~ U{kMin..kMax},
        #    injected at A (the surrogate 0.5 mean_b ||A - stopgrad(A - g)||^2).
        with torch.no_grad():
            ks = torch.randint(k_min, k_max + 1, (b,))
            ak = add_noise(a_d, torch.randn_like(a_d), ks)
            sig = (1 - ALPHA_BAR[ks]).sqrt().view(-1, 1, 1)
            g = sig * (teacher(ak, ks, cond) - score(ak, ks, cond))
        opt_g.zero_grad()
        a.backward(g / b)
        opt_g.step()
        (0.5 * g.square().sum() / b).item()
        ema.update()
        state["step"] = step + 1

    return time_it(f, warmup=1, reps=6 if quick else 20)


BENCHES: Dict[str, Callable[[bool], Tuple[float, int]]] = {
    "forward-b1-4.56M": lambda q: forward_b1("4.56M", q),
    "forward-b1-65.8M": lambda q: forward_b1("65.8M", q),
    "train-b256-4.56M": train_b256,
    "trainer-b64-recipe": trainer_b64_recipe,
    "onedp-s-b32-recipe": onedp_s_b32_recipe,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch.set_num_threads (default: all cores)")
    ap.add_argument("--only", default="", help=f"comma-separated ids out of: {', '.join(BENCHES)}")
    args = ap.parse_args()
    ids = [s.strip() for s in args.only.split(",") if s.strip()] or list(BENCHES)
    unknown = [i for i in ids if i not in BENCHES]
    if unknown:
        ap.error(f"unknown id(s) {', '.join(unknown)}; known: {', '.join(BENCHES)}")
    if args.threads < 1:
        ap.error("--threads must be at least 1")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    log(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s){', quick' if args.quick else ''}")
    rows = []
    for i in ids:
        ms, reps = BENCHES[i](args.quick)
        log(f"{i}: {ms:.2f} ms (median of {reps})")
        rows.append({"id": i, "ms": round(ms, 3), "reps": reps})
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows}))


if __name__ == "__main__":
    main()
