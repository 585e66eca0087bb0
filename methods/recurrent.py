"""`nn.LSTM` written out for training steps: the same function, parameters and state dict, fewer wasted FLOPs.

Why: the CPU's oneDNN LSTM kernel computes the gradient of its input even when the input needs none (the text
BiLSTM reads raw token vectors: its first layer's 768-wide input gradient is thrown away) and it runs its recurrent
steps as a black box. Here each layer's input projection of both directions is one GEMM over every step (its
input gradient only when the input needs one), and the recurrence is a short loop of small ops (PyTorch's gate
order i, f, g, o; zero initial state). Used only where it is exactly `nn.LSTM`'s computation (batch-first, no
projection, no inter-layer dropout, float32/float64 outside autocast) and a gradient is being taken; inference and
the mixed precisions keep the module's own kernel.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def written_out(lstm: nn.LSTM, x: Tensor) -> bool:
    """Whether `lstm_outputs` writes `lstm` out for this input (see the module docstring)."""
    return (torch.is_grad_enabled() and lstm.training and lstm.batch_first and lstm.bias and lstm.proj_size == 0
            and (lstm.dropout == 0 or lstm.num_layers == 1) and x.dim() == 3
            and x.dtype in (torch.float32, torch.float64) and not torch.is_autocast_enabled(x.device.type))


def lstm_outputs(lstm: nn.LSTM, x: Tensor) -> Tensor:
    """`lstm(x)[0]`: the top layer's outputs `[B, T, directions · hidden]` for x `[B, T, C]`, zero initial state."""
    if not written_out(lstm, x):
        return lstm(x)[0]
    hidden, steps = lstm.hidden_size, x.shape[1]
    suffixes = ["", "_reverse"] if lstm.bidirectional else [""]
    out = x
    for layer in range(lstm.num_layers):
        names = [f"_l{layer}{s}" for s in suffixes]
        weight = torch.cat([getattr(lstm, "weight_ih" + n) for n in names])
        bias = torch.cat([getattr(lstm, "bias_ih" + n) + getattr(lstm, "bias_hh" + n) for n in names])
        projected = F.linear(out, weight, bias)                          # [B, T, directions · 4h]
        outs = []
        for d, n in enumerate(names):
            recurrent = getattr(lstm, "weight_hh" + n).t()
            gates_x = projected[..., 4 * hidden * d:4 * hidden * (d + 1)]
            hs: list[Tensor | None] = [None] * steps
            h = c = None
            for t in (range(steps) if d == 0 else range(steps - 1, -1, -1)):
                gates = gates_x[:, t] if h is None else torch.addmm(gates_x[:, t], h, recurrent)
                i, f, g, o = gates.chunk(4, 1)
                i, f, o, g = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o), torch.tanh(g)
                c = i * g if c is None else torch.addcmul(f * c, i, g)
                h = o * torch.tanh(c)
                hs[t] = h
            outs.append(torch.stack(hs, 1))
        out = torch.cat(outs, -1) if len(outs) > 1 else outs[0]
    return out
