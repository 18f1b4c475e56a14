"""ConditionalUnet1D of Diffusion Policy (Chi et al. 2023), as onedp's src/nn/unet1d.ts builds it.

A small, dependency-free (torch only, no einops) port used as onedp's benchmark peer. Modules,
parameter names and registration order follow the reference (and onedp), so state-dict keys and
shapes are the same: mid_modules, diffusion_step_encoder, up_modules, down_modules, final_conv.
The network takes and returns (B, T, C) like the reference and works in PyTorch's native NCL
layout inside.

    python3 bench/peer/unet.py     # prints the parameter counts of the benchmarked configurations
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence

import torch
from torch import nn


class SinusoidalPosEmb(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        emb = math.log(10000) / (half - 1)
        emb = torch.exp(torch.arange(half, device=x.device) * -emb)
        emb = x.float()[:, None] * emb[None, :]
        return torch.cat((emb.sin(), emb.cos()), dim=-1)


class Conv1dBlock(nn.Module):
    """Conv1d -> GroupNorm -> Mish."""

    def __init__(self, in_c: int, out_c: int, k: int, n_groups: int = 8):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv1d(in_c, out_c, k, padding=k // 2),
            nn.GroupNorm(n_groups, out_c),
            nn.Mish(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class ConditionalResidualBlock1D(nn.Module):
    """Two Conv1dBlocks with FiLM (scale and bias, or bias only) from the conditioning vector."""

    def __init__(self, in_c: int, out_c: int, cond_dim: int, k: int = 3, n_groups: int = 8, cond_predict_scale: bool = False):
        super().__init__()
        self.blocks = nn.ModuleList([Conv1dBlock(in_c, out_c, k, n_groups), Conv1dBlock(out_c, out_c, k, n_groups)])
        self.out_channels = out_c
        self.cond_predict_scale = cond_predict_scale
        # Sequential(Mish, Linear, Rearrange('b t -> b t 1')) in the reference; the reshape is in forward.
        self.cond_encoder = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * out_c if cond_predict_scale else out_c))
        self.residual_conv = nn.Conv1d(in_c, out_c, 1) if in_c != out_c else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        out = self.blocks[0](x)
        embed = self.cond_encoder(cond)
        if self.cond_predict_scale:
            embed = embed.reshape(embed.shape[0], 2, self.out_channels, 1)
            out = embed[:, 0] * out + embed[:, 1]
        else:
            out = out + embed.unsqueeze(-1)
        out = self.blocks[1](out)
        return out + self.residual_conv(x)


class Downsample1d(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample1d(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.ConvTranspose1d(dim, dim, 4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ConditionalUnet1D(nn.Module):
    def __init__(
        self,
        input_dim: int,
        global_cond_dim: int,
        diffusion_step_embed_dim: int = 128,
        down_dims: Sequence[int] = (64, 128, 256),
        kernel_size: int = 5,
        n_groups: int = 8,
        cond_predict_scale: bool = True,
    ):
        super().__init__()
        all_dims = [input_dim, *down_dims]
        dsed = diffusion_step_embed_dim
        cond_dim = dsed + global_cond_dim
        in_out = list(zip(all_dims[:-1], all_dims[1:]))
        k, g, fs = kernel_size, n_groups, cond_predict_scale
        self.length_multiple = 2 ** (len(down_dims) - 1)

        # Registration order as the reference's __init__ (and onedp): mid, step encoder, up, down, final.
        mid = down_dims[-1]
        self.mid_modules = nn.ModuleList([
            ConditionalResidualBlock1D(mid, mid, cond_dim, k, g, fs),
            ConditionalResidualBlock1D(mid, mid, cond_dim, k, g, fs),
        ])
        self.diffusion_step_encoder = nn.Sequential(
            SinusoidalPosEmb(dsed),
            nn.Linear(dsed, dsed * 4),
            nn.Mish(),
            nn.Linear(dsed * 4, dsed),
        )
        self.up_modules = nn.ModuleList()
        for ind, (dim_in, dim_out) in enumerate(reversed(in_out[1:])):
            is_last = ind >= len(in_out) - 1
            self.up_modules.append(nn.ModuleList([
                ConditionalResidualBlock1D(dim_out * 2, dim_in, cond_dim, k, g, fs),
                ConditionalResidualBlock1D(dim_in, dim_in, cond_dim, k, g, fs),
                Upsample1d(dim_in) if not is_last else nn.Identity(),
            ]))
        self.down_modules = nn.ModuleList()
        for ind, (dim_in, dim_out) in enumerate(in_out):
            is_last = ind >= len(in_out) - 1
            self.down_modules.append(nn.ModuleList([
                ConditionalResidualBlock1D(dim_in, dim_out, cond_dim, k, g, fs),
                ConditionalResidualBlock1D(dim_out, dim_out, cond_dim, k, g, fs),
                Downsample1d(dim_out) if not is_last else nn.Identity(),
            ]))
        self.final_conv = nn.Sequential(
            Conv1dBlock(down_dims[0], down_dims[0], k, g),
            nn.Conv1d(down_dims[0], input_dim, 1),
        )

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, global_cond: torch.Tensor) -> torch.Tensor:
        """sample (B, T, input_dim), timestep (B,), global_cond (B, global_cond_dim) -> (B, T, input_dim)."""
        x = sample.transpose(1, 2)  # (B, C, T)
        if timestep.dim() == 0:
            timestep = timestep.expand(sample.shape[0])
        cond = torch.cat([self.diffusion_step_encoder(timestep), global_cond], dim=-1)
        skips: List[torch.Tensor] = []
        for res1, res2, down in self.down_modules:
            x = res1(x, cond)
            x = res2(x, cond)
            skips.append(x)
            x = down(x)
        for m in self.mid_modules:
            x = m(x, cond)
        for res1, res2, up in self.up_modules:
            x = torch.cat((x, skips.pop()), dim=1)
            x = res1(x, cond)
            x = res2(x, cond)
            x = up(x)
        x = self.final_conv(x)
        return x.transpose(1, 2)


def num_parameters(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# The configurations onedp benchmarks (bench/nn.ts, bench/distill.ts); horizon 16 everywhere.
CONFIGS = {
    # onedp's CPU default (UNET_DEFAULTS), obs 20-D x 2 steps -> global cond 40: 4,559,554 parameters.
    "4.56M": dict(input_dim=2, global_cond_dim=40, diffusion_step_embed_dim=128, down_dims=(64, 128, 256)),
    # The published PushT-state U-Net (PUSHT_STATE_UNET): 65,783,298 parameters.
    "65.8M": dict(input_dim=2, global_cond_dim=40, diffusion_step_embed_dim=256, down_dims=(256, 512, 1024)),
    # `onedp reproduce pusht-state`'s recipe U-Net: 340,002 parameters.
    "recipe": dict(input_dim=2, global_cond_dim=40, diffusion_step_embed_dim=64, down_dims=(32, 64)),
}

# onedp's numParameters() for the same configurations (checked with npx tsx against src/nn/unet1d.ts).
ONEDP_PARAMETERS = {"4.56M": 4_559_554, "65.8M": 65_783_298, "recipe": 340_002}


def build(name: str) -> ConditionalUnet1D:
    return ConditionalUnet1D(**CONFIGS[name])


if __name__ == "__main__":
    ok = True
    for name in CONFIGS:
        n = num_parameters(build(name))
        match = n == ONEDP_PARAMETERS[name]
        ok &= match
        print(f"{name:7s} torch {n:>11,d}  onedp {ONEDP_PARAMETERS[name]:>11,d}  {'ok' if match else 'MISMATCH'}")
    raise SystemExit(0 if ok else 1)
