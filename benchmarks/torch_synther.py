"""PyTorch peer of rlgen's SynthER diffusion model, for side-by-side benchmarks.

The same residual MLP denoiser (random-Fourier noise embedding, 2-layer SiLU MLP, ``num_blocks``
blocks of h + Linear(ReLU(h))), EDM preconditioning and loss, AdamW + cosine + grad clip + EMA, and
the stochastic Heun sampler, written the way SynthER's reference code runs (eager PyTorch, a Python
loop over sampler steps). Precision: "fp32" (TF32 off), "tf32" (TF32 matmuls) or "bf16" (autocast).
Imported by ``benchmarks/diffusion.py`` only when torch is installed.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time

import torch
import torch.nn.functional as F
from torch import nn


class ResidualDenoiser(nn.Module):
    def __init__(self, dim: int, width: int, num_blocks: int = 6, embed_dim: int = 128):
        super().__init__()
        self.register_buffer("freqs", torch.randn(8))  # 16 Fourier features + t itself
        self.embed = nn.Sequential(
            nn.Linear(17, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim)
        )
        self.proj = nn.Linear(dim, embed_dim)
        self.inp = nn.Linear(embed_dim, width)
        self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(num_blocks))
        self.out = nn.Linear(width, dim)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        angles = 2 * math.pi * c_noise[:, None] * self.freqs
        fourier = torch.cat([c_noise[:, None], angles.sin(), angles.cos()], dim=-1)
        h = self.inp(self.proj(x) + self.embed(fourier))
        for block in self.blocks:
            h = h + block(F.relu(h))
        return self.out(F.relu(h))


def _autocast(precision: str, device: str):
    if precision == "bf16":
        return torch.autocast(device_type=device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def denoise(net: nn.Module, x: torch.Tensor, sigma: torch.Tensor, precision: str) -> torch.Tensor:
    """EDM preconditioning with sigma_data = 1; ``sigma`` has shape (n,)."""
    s = sigma[:, None]
    scale = torch.sqrt(s**2 + 1)
    with _autocast(precision, x.device.type):
        f = net(x / scale, torch.log(sigma) / 4)
    return x / scale**2 + s / scale * f.float()


class Trainer:
    """AdamW 3e-4 with cosine decay, grad-norm clip 1, EMA 0.995, EDM loss."""

    def __init__(self, dim: int, width: int, precision: str, device: str, num_steps: int):
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        torch.backends.cudnn.allow_tf32 = precision == "tf32"
        self.precision, self.device = precision, device
        self.net = ResidualDenoiser(dim, width).to(device)
        self.ema = copy.deepcopy(self.net).requires_grad_(False)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=3e-4, weight_decay=0.0)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, num_steps)

    def step(self, batch: torch.Tensor) -> None:
        sigma = torch.exp(-1.2 + 1.2 * torch.randn(batch.shape[0], device=batch.device))
        noisy = batch + sigma[:, None] * torch.randn_like(batch)
        weight = (sigma**2 + 1) / sigma**2
        err = (denoise(self.net, noisy, sigma, self.precision) - batch) ** 2
        loss = (weight * err.mean(dim=-1)).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.opt.step()
        self.sched.step()
        with torch.no_grad():
            ema, params = list(self.ema.parameters()), list(self.net.parameters())
            torch._foreach_lerp_(ema, params, 1 - 0.995)

    @torch.no_grad()
    def sample(self, n: int, num_steps: int = 128) -> torch.Tensor:
        """EDM Algorithm 2: sigma in [0.002, 80], rho 7, S_churn 80 (S_tmin 0.05, S_tmax 50,
        S_noise 1.003)."""
        i = torch.arange(num_steps, device=self.device) / (num_steps - 1)
        t = (80 ** (1 / 7) + i * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
        t = torch.cat([t, torch.zeros(1, device=self.device)]).tolist()
        gamma_max = min(80 / num_steps, math.sqrt(2) - 1)
        dim = self.net.out.out_features
        x = t[0] * torch.randn(n, dim, device=self.device)
        ones = torch.ones(n, device=self.device)

        def direction(x, level):
            return (x - denoise(self.ema, x, level * ones, self.precision)) / level

        for t_cur, t_next in zip(t[:-1], t[1:], strict=True):
            gamma = gamma_max if 0.05 <= t_cur <= 50 else 0.0
            t_hat = t_cur * (1 + gamma)
            x_hat = x + math.sqrt(t_hat**2 - t_cur**2) * 1.003 * torch.randn_like(x)
            d = direction(x_hat, t_hat)
            x = x_hat + (t_next - t_hat) * d
            if t_next > 0:
                x = x_hat + (t_next - t_hat) * 0.5 * (d + direction(x, t_next))
        return x


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def bench(
    dim: int,
    width: int,
    precision: str,
    batch_size: int,
    train_steps: int,
    num_samples: int,
    sampler_steps: int,
    repeats: int,
) -> dict:
    """Training steps/s and samples/s of the PyTorch peer (median of ``repeats``, warmed up)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    trainer = Trainer(dim, width, precision, device, num_steps=100_000)
    data = torch.randn(100_000, dim, device=device)

    def train():
        for _ in range(train_steps):
            trainer.step(data[torch.randint(0, data.shape[0], (batch_size,), device=device)])

    def timed(fn):
        fn()
        _sync(device)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - start)
        return sorted(times)[len(times) // 2]

    train_s = timed(train)
    sample_s = timed(lambda: trainer.sample(num_samples, sampler_steps))
    return {
        "impl": "torch",
        "torch": torch.__version__,
        "torch_device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "train_steps_per_s": train_steps / train_s,
        "samples_per_s": num_samples / sample_s,
    }
