"""Per-modality encoders and decoders of the DCID skeleton (docs/ORIGINAL_CODE.md §1.3), sized from the corpus.

A `ModalityBranch` owns one modality's parts: an optional text front-end (BiLSTM), the modal-general encoder Φ
(→ z `[B, T, D]`, the input of the quantizer), the modal-specific encoder Ψ (→ the decoder's side input and the
vector CLUB compares with the code) and the reconstruction decoder. Features come in two layouts, chosen by the
corpus' per-clip shape: vectors `[T, C]` (audio, text, pooled video) or maps `[T, H, W, C]` (video; the SE channel
attention + spatial attention pooling path of the paper, and a conv specific encoder / transposed-conv decoder).
Every width is either read from the shape or taken from the settings dict (the method's scale preset).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from .mutual_info import distinct_rows, mlp
from .recurrent import lstm_outputs


class TemporalTransformer(nn.Module):
    """Linear(in→d) then a post-LayerNorm transformer encoder over T, no positional encoding (as coded):
    `[B, T, in]` -> `[B, T, d]`. `layers = 0` leaves the linear map alone."""

    def __init__(self, in_dim: int, d_model: int, layers: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        self.proj = nn.Linear(in_dim, d_model)
        self.encoder = None
        if layers > 0:
            layer = nn.TransformerEncoderLayer(d_model, heads, ffn, dropout, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x)
        return self.encoder(x) if self.encoder is not None else x


class SpatialAttentionPool(nn.Module):
    """Video maps `[B, T, H, W, C]` -> `[B, T, C]` (DCID's visual semantic path, audio-free).

    SE channel attention a = σ(W2 ReLU(W1 mean_HW f)), f ← f·a + f; then each position scores
    tanh(w·(ReLU(P f_hw) ⊙ ReLU(G mean_HW f))), softmax over the H·W positions, and f is averaged with those weights.
    """

    def __init__(self, channels: int, reduction: int, att_dim: int):
        super().__init__()
        self.channel_gate = nn.Sequential(nn.Linear(channels, max(1, channels // reduction)), nn.ReLU(),
                                          nn.Linear(max(1, channels // reduction), channels), nn.Sigmoid())
        self.position = nn.Linear(channels, att_dim)
        self.summary = nn.Linear(channels, att_dim)
        self.score = nn.Linear(att_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, t, h, w, c = x.shape
        f = x.reshape(b * t, h * w, c)
        f = f * self.channel_gate(f.mean(1)).unsqueeze(1) + f
        query = torch.relu(self.position(f)) * torch.relu(self.summary(f.mean(1))).unsqueeze(1)
        weights = torch.tanh(self.score(query)).squeeze(-1).softmax(-1)       # [BT, HW]
        return (weights.unsqueeze(-1) * f).sum(1).reshape(b, t, c)


class ResidualBlock(nn.Module):
    """x + Conv1×1(ReLU(Conv3×3(ReLU(x)))), then ReLU (one-block residual stack of the VQ-VAE decoders)."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, hidden, 3, padding=1, bias=False), nn.ReLU(),
                                  nn.Conv2d(hidden, channels, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x + self.body(x))


def _to_maps(x: Tensor) -> Tensor:
    """`[B, T, H, W, C]` -> `[B·T, C, H, W]`."""
    b, t, h, w, c = x.shape
    return x.reshape(b * t, h, w, c).permute(0, 3, 1, 2)


def _from_maps(x: Tensor, b: int, t: int) -> Tensor:
    """`[B·T, C, H, W]` -> `[B, T, H, W, C]`."""
    return x.permute(0, 2, 3, 1).reshape(b, t, *x.shape[2:], x.shape[1])


def conv_padding(height: int, width: int) -> int:
    """Valid 3×3 convolutions (7→5→3, as coded) when the map allows two of them, else 'same' padding."""
    return 0 if min(height, width) >= 5 else 1


class MapSpecificEncoder(nn.Module):
    """Video Ψ: Conv3×3 C→w1, ReLU, Conv3×3 w1→w2, ReLU, Conv1×1, residual block -> map `[B, T, h, w, w2]`;
    its spatial mean through an MLP w2→w2/2→C is the vector `[B, T, C]` CLUB compares with the code."""

    def __init__(self, channels: int, hw: tuple[int, int], widths: Sequence[int]):
        super().__init__()
        w1, w2 = widths
        pad = conv_padding(*hw)
        self.convs = nn.Sequential(nn.Conv2d(channels, w1, 3, padding=pad), nn.ReLU(),
                                   nn.Conv2d(w1, w2, 3, padding=pad), nn.ReLU(), nn.Conv2d(w2, w2, 1),
                                   ResidualBlock(w2, w2))
        self.club_head = mlp([w2, w2 // 2, channels])
        self.out_dim, self.club_dim = w2, channels

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b, t = x.shape[:2]
        maps = self.convs(_to_maps(x))
        return _from_maps(maps, b, t), self.club_head(maps.mean((2, 3)).reshape(b, t, -1))


class VectorSpecificEncoder(nn.Module):
    """Audio / text / pooled-video Ψ: Linear + ReLU; the output is both the decoder input and CLUB's y."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU())
        self.out_dim = self.club_dim = out_dim

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        s = self.net(x)
        return s, s


class VectorDecoder(nn.Module):
    """x̂ = Linear([Linear(d→d)(q); s]) `[B, T, out]`; without a specific input (`side_dim = 0`) from q alone."""

    def __init__(self, code_dim: int, side_dim: int, out_dim: int):
        super().__init__()
        self.code = nn.Linear(code_dim, code_dim)
        self.out = nn.Linear(code_dim + side_dim, out_dim)

    def forward(self, q: Tensor, side: Tensor | None = None) -> Tensor:
        h = self.code(q)
        return self.out(h if side is None else torch.cat([h, side], -1))


class MapDecoder(nn.Module):
    """Video decoder: Linear(d→d)(q) tiled over the h×w map, concatenated with Ψ's map, then ConvT3×3 →w1,
    residual block, ConvT3×3 →C, ReLU, ConvT1×1 -> `[B, T, H, W, C]` (inverts `MapSpecificEncoder`)."""

    def __init__(self, code_dim: int, side_channels: int, hidden: int, channels: int, hw: tuple[int, int]):
        super().__init__()
        pad = conv_padding(*hw)
        self.hw = hw
        self.code = nn.Linear(code_dim, code_dim)
        self.deconvs = nn.Sequential(nn.ConvTranspose2d(code_dim + side_channels, hidden, 3, padding=pad),
                                     ResidualBlock(hidden, hidden),
                                     nn.ConvTranspose2d(hidden, channels, 3, padding=pad), nn.ReLU(),
                                     nn.ConvTranspose2d(channels, channels, 1))
        self.inner = (hw[0] - 4, hw[1] - 4) if pad == 0 else hw   # map size after the two 3×3 convs

    def forward(self, q: Tensor, side: Tensor | None = None) -> Tensor:
        b, t = q.shape[:2]
        h, w = side.shape[2:4] if side is not None else self.inner
        tiled = self.code(q)[:, :, None, None, :].expand(b, t, h, w, q.shape[-1])
        maps = tiled if side is None else torch.cat([tiled, side], -1)
        return _from_maps(self.deconvs(_to_maps(maps)), b, t)


class TextFrontEnd(nn.Module):
    """DCID's text front-end: 2-layer BiLSTM over the token vectors `[B, L, C]` -> `[B, L, 2h]`, trained jointly;
    its output feeds Φ and Ψ and is also the reconstruction target (as coded)."""

    def __init__(self, in_dim: int, hidden: int, layers: int = 2):
        super().__init__()
        self.lstm = nn.LSTM(in_dim, hidden, layers, batch_first=True, bidirectional=True)
        self.out_dim = 2 * hidden

    def forward(self, x: Tensor) -> Tensor:
        return lstm_outputs(self.lstm, x)


def once_per_distinct_clip(fn, x: Tensor) -> Tensor:
    """fn(x) for `[B, ...]` clips, with fn run once per distinct clip and its outputs gathered back to every clip.

    Why: the pretraining corpus gives every clip of a class the class prompt, so a batch repeats many of its
    sentences; gathering the BiLSTM's outputs is the same function (and, through the gather's backward, the same
    gradient) at the cost of the distinct clips. Inputs that need a gradient, or with no repeat, go through whole."""
    rows = None if x.requires_grad or x.shape[0] < 2 else distinct_rows(x.reshape(x.shape[0], -1))
    if rows is None or rows.values.shape[0] == x.shape[0]:
        return fn(x)
    return fn(rows.values.view(-1, *x.shape[1:]))[rows.inverse]


class ModalityBranch(nn.Module):
    """One modality's front-end, Φ (general), optional Ψ (specific) and optional decoder.

    `shape` is the per-clip feature shape `(T, C)` or `(T, H, W, C)`. Settings keys used: code_dim, layers,
    heads, ffn, dropout, specific_dim, video_widths, se_reduction, att_dim, text_hidden.
    `decoder_side`: whether the decoder also receives Ψ's output (DCID) or rebuilds from the code alone (CMCM).
    """

    def __init__(self, modality: str, shape: Sequence[int], s: Mapping[str, Any], *, text_front: bool = False,
                 specific: bool = True, decoder: bool = True, decoder_side: bool = True):
        super().__init__()
        self.modality, self.shape = modality, tuple(int(v) for v in shape)
        if len(self.shape) not in (2, 4):
            raise ValueError(f"{modality}: per-clip features must be [T, C] or [T, H, W, C], got {self.shape}")
        self.spatial = len(self.shape) == 4
        width = self.shape[-1]
        d = int(s["code_dim"])
        self.front = TextFrontEnd(width, int(s["text_hidden"])) if text_front else None
        if self.front is not None:
            if self.spatial:
                raise ValueError(f"{modality}: the text front-end needs [T, C] features, got {self.shape}")
            width = self.front.out_dim
        self.target_dim = width
        pool = SpatialAttentionPool(width, int(s["se_reduction"]), int(s["att_dim"])) if self.spatial else None
        self.pool = pool
        self.general_net = TemporalTransformer(width, d, int(s["layers"]), int(s["heads"]), int(s["ffn"]),
                                               float(s["dropout"]))
        self.specific_net = None
        if specific:
            self.specific_net = (MapSpecificEncoder(width, self.shape[1:3], s["video_widths"]) if self.spatial
                                 else VectorSpecificEncoder(width, int(s["specific_dim"])))
        self.decoder_net = None
        if decoder:
            side = self.specific_net.out_dim if (decoder_side and self.specific_net is not None) else 0
            self.decoder_net = (MapDecoder(d, side, int(s["video_widths"][0]), width, self.shape[1:3])
                                if self.spatial else VectorDecoder(d, side, width))
        self.decoder_side = bool(decoder_side and specific)

    @property
    def club_dim(self) -> int:
        return self.specific_net.club_dim

    def check(self, x: Tensor) -> None:
        """Raise ValueError when x's per-step shape differs from the pretraining corpus'."""
        if tuple(x.shape[2:]) != self.shape[1:]:
            raise ValueError(f"{self.modality} features have per-step shape {tuple(x.shape[2:])}; this model was "
                             f"pretrained on {self.shape[1:]}")

    def inputs(self, x: Tensor) -> Tensor:
        """Front-end output (text BiLSTM) or x itself: what Φ and Ψ read and the decoder rebuilds."""
        return once_per_distinct_clip(self.front, x) if self.front is not None else x

    def general(self, feats: Tensor) -> Tensor:
        """Φ: `[B, T, ...]` -> z `[B, T, D]`."""
        return self.general_net(self.pool(feats) if self.pool is not None else feats)

    def specific(self, feats: Tensor) -> tuple[Tensor, Tensor]:
        """Ψ: (decoder side input, CLUB vector `[B, T, Dy]`)."""
        return self.specific_net(feats)

    def decode(self, q: Tensor, side: Tensor | None) -> Tensor:
        return self.decoder_net(q, side if self.decoder_side else None)


class BranchedModel(nn.Module):
    """A pretraining model holding one `ModalityBranch` per modality in `self.branches` (DCID, CMCM, TURN, CODIS).

    Shares the two steps every such model starts from: raw features -> branch inputs -> modal-general z."""

    def general(self, modality: str, x):
        """Raw features `[N, T, ...]` -> z `[N, T, D]` (front-end + Φ)."""
        branch = self.branches[modality]
        branch.check(x)
        return branch.general(branch.inputs(x))

    def inputs_and_general(self, batch) -> tuple[dict, dict]:
        """Per modality: the branch inputs (reconstruction targets) and z `[B, T, D]`."""
        feats = {m: self.branches[m].inputs(batch[m]) for m in self.modalities}
        return feats, {m: self.branches[m].general(feats[m]) for m in self.modalities}
