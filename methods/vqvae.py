"""A small image VQ-VAE (van den Oord et al. 2017) for the TOC masked-reconstruction experiment (seed 000 Table 3).

The paper trains a VQ-VAE (codebook 128×128) on CelebA-HQ; unibench trains this one on scikit-learn's bundled
8×8 digits so the experiment runs offline in seconds. The model is built and trained *inside* the `toc_recon`
task (`tasks/toc_recon.py` calls `train_vqvae`): it learns from images, not from the audio/video/text corpus every
registered method pretrains on, so it has no place in the pretraining cache. The `vqvae` registry card exists so
that `run --method vqvae --task toc_recon` parses and names the cell; `VQVAEMethod.pretrain` refuses tasks that
need a corpus-pretrained model.

Shapes: images `[N, 1, H, W]` in [0, 1]; latents `[N, D, h, w]` (h = H/2, w = W/2); codebook `[K, D]`;
codes `[N, h·w]`.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.contracts import Method, UserError

from .quantizers import MultiModalEMAQuantizer


class VQVAE(nn.Module):
    """Conv encoder (stride 2) -> VQ-EMA codebook (methods.quantizers) -> conv decoder with a sigmoid output.

    The quantizer is the DCID one with a single "image" modality: EMA codebook (decay 0.99), commitment, and dead
    code reset after `dead_after` batches without a hit. Its self-commitment weight is 2β (as DCID codes it), so it
    is built with β/2 to give the VQ-VAE paper's β‖z − sg[e]‖². Latent positions play the role of time steps.
    """

    def __init__(self, codebook_size: int = 128, dim: int = 64, hidden: int = 64, beta: float = 0.25,
                 dead_after: int = 20, generator: torch.Generator | None = None):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, hidden // 2, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden // 2, hidden, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, dim, 1))
        self.quantizer = MultiModalEMAQuantizer(("image",), codebook_size, dim, decay=0.99, beta=beta / 2,
                                                dead_after=dead_after, generator=generator)
        self.decoder = nn.Sequential(
            nn.Conv2d(dim, hidden, 3, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(hidden, hidden // 2, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(hidden // 2, 1, 3, padding=1), nn.Sigmoid())

    @property
    def codebook(self) -> torch.Tensor:
        """[K, D]"""
        return self.quantizer.codebooks[0]

    @staticmethod
    def _tokens(z: torch.Tensor) -> torch.Tensor:
        """[N, D, h, w] -> [N, h·w, D] (the quantizer's [B, T, D])."""
        return z.flatten(2).transpose(1, 2)

    @staticmethod
    def _grid(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """[N, h·w, D] -> [N, D, h, w]."""
        return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, h, w)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """x [N, 1, H, W] -> (reconstruction [N, 1, H, W], codes [N, h·w], commitment loss)."""
        z = self.encoder(x)
        out = self.quantizer({"image": self._tokens(z)}, generator)
        quantized = self._grid(out.quantized["image"], *z.shape[2:])  # straight-through: gradient of z
        return self.decoder(quantized), out.indices["image"], out.losses["commit_image"]

    @torch.no_grad()
    def encode_quantized(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [N, 1, H, W] -> (codebook vectors [N, D, h, w], codes [N, h·w]); inference path, no EMA update."""
        z = self.encoder(x)
        vectors, codes = self.quantizer.quantize(self._tokens(z))
        return self._grid(vectors, *z.shape[2:]), codes

    @torch.no_grad()
    def decode(self, quantized: torch.Tensor) -> torch.Tensor:
        """quantized [N, D, h, w] -> images [N, 1, H, W]."""
        return self.decoder(quantized)


def train_vqvae(images: torch.Tensor, *, codebook_size: int, dim: int, hidden: int, beta: float, epochs: int,
                batch_size: int, lr: float, seed: int, dead_after: int = 20,
                progress: Callable[..., Iterable] = lambda it, **kw: it, history: list | None = None) -> VQVAE:
    """Train on images [N, 1, H, W] with MSE reconstruction + commitment (Adam; the codebook follows its EMA).

    Same seed -> same model on CPU. The global RNG is left untouched (forked), so the caller's later draws do not
    depend on training. `history`, when given, receives per epoch the mean `recon`, `commitment` and `total` loss.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        model = VQVAE(codebook_size, dim, hidden, beta, dead_after, generator)
        optimiser = torch.optim.Adam(model.parameters(), lr=lr)
        model.train()
        for _ in progress(range(epochs), description="toc_recon: training VQ-VAE", total=epochs):
            sums = torch.zeros(2, dtype=torch.float64)
            for batch in torch.randperm(len(images), generator=generator).split(batch_size):
                x = images[batch]
                recon, _, commitment = model(x, generator)
                mse = F.mse_loss(recon, x)
                loss = mse + commitment
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                sums += torch.stack([mse.detach(), commitment.detach()]).double() * len(batch)
            if history is not None:
                recon_mean, commitment_mean = (sums / len(images)).tolist()
                history.append({"recon": recon_mean, "commitment": commitment_mean,
                                "total": recon_mean + commitment_mean})
        model.eval()
    return model


class VQVAEMethod(Method):
    """Registry entry `vqvae`: only meaningful with `toc_recon`, which trains the model itself."""

    def pretrain(self, corpus, cfg, seed, ctx):
        raise UserError("vqvae is trained inside the toc_recon task on image data; use it only with "
                        "--task toc_recon (it has no corpus pretraining)")

    def load(self, directory, cfg, ctx):
        raise UserError("vqvae has no cached pretraining; use it only with --task toc_recon")
