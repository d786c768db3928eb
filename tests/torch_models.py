"""PyTorch model factories for the command-line tests: ``--model tests.torch_models:NAME``.

Imported only by tests that have PyTorch (and by the command line, through
``--model``).
"""

from __future__ import annotations

import torch


def small_cnn() -> torch.nn.Module:
    """A 1-D CNN on samples of shape (1, 5) with two outputs (float32, as factories make)."""
    return torch.nn.Sequential(
        torch.nn.Conv1d(1, 3, 2), torch.nn.Tanh(), torch.nn.Flatten(), torch.nn.Linear(12, 2)
    )


class _Residual(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = torch.nn.Linear(5, 8)
        self.block = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.SiLU())
        self.out = torch.nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.inp(x))
        return self.out(h + self.block(h))


class Factories:
    """A factory reached through an attribute path (``Factories.residual``)."""

    @staticmethod
    def residual() -> torch.nn.Module:
        return _Residual()


def failing() -> torch.nn.Module:
    raise RuntimeError("no GPU in this test")


def not_a_module() -> dict:
    return {"weight": torch.zeros(2)}


#: not callable
CONSTANT = 3
