"""Model factories for ``kernelcomp ... --model scripts.mnist_cnn:cnn16`` (run from the repo root).

``cnn16``/``cnn64``: ``conv3x3(c) - ReLU - conv3x3(c) - ReLU - global average pool -
Linear(c, 1)`` on 28 x 28 one-channel images (``padding=1``), PyTorch's default
initialisation with ``torch.manual_seed(0)``: the CNNs of scripts/bench_torch_ntk.py.
"""

from __future__ import annotations

from typing import Any


def cnn(c: int) -> Any:
    import torch

    nn = torch.nn
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 1))


def cnn16() -> Any:
    return cnn(16)


def cnn64() -> Any:
    return cnn(64)
