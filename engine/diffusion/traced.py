"""Traced calls for the CPU: a module's operations recorded once per input signature, replayed
without the Python around them.

On the CPU a small model (the built-in tiny one) is bound by the Python and dispatch cost of its
few hundred small operations, not by arithmetic: the tiny UNet at 256x256 spends about a fifth
of its time in diffusers' Python. ``torch.jit.trace`` records the aten operations of one call;
replaying the record runs the same kernels on the same inputs in the same order, so the results
are bitwise those of the eager call (``tests/engine/diffusion/test_traced.py`` checks it).

A record holds only for the shapes it was made with (diffusers branches on shapes, and on the
rank of the timestep), so each input signature (shapes and dtypes) gets its own, made on the
signature's second use: a one-off call (a test frame, a FLOP count) stays eager, and a render
loop pays the trace (about 0.3 s for the tiny UNet) on its second frame. Weights are shared with
the module, not copied. A module (or its direct child, the wrapped model) with forward hooks
runs eagerly, since a replay would skip the hooks. Anything that fails to trace stays eager for
that signature (logged once); a torch without ``torch.jit`` simply runs eagerly.
"""

from __future__ import annotations

import logging
import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch

log = logging.getLogger(__name__)

Signature = tuple[tuple[tuple[int, ...], torch.dtype, str], ...]
_EAGER = "eager"  # a signature that could not be traced
_MAX_PENDING = 64  # signatures counted but not yet traced


class TracedCalls:
    """Calls ``module(*tensors) -> tensor`` through a trace per input signature.

    ``trace_after``: the use of a signature that traces it (2: its second use); at most
    ``max_traces`` records are kept, the least recently used dropped first. ``name`` is what
    the log calls the module.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        *,
        name: str = "",
        trace_after: int = 2,
        max_traces: int = 8,
    ) -> None:
        if trace_after < 1 or max_traces < 1:
            raise ValueError(
                f"trace_after ({trace_after}) and max_traces ({max_traces}) must be at least 1"
            )
        self.module = module
        self.name = name or type(module).__name__
        self.trace_after = trace_after
        self.max_traces = max_traces
        self._uses: dict[Signature, int] = {}
        self._records: OrderedDict[Signature, Callable[..., Any] | str] = OrderedDict()

    @property
    def traced(self) -> int:
        """How many signatures run through a record."""
        return sum(1 for record in self._records.values() if record != _EAGER)

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        if _hooked(self.module):
            return self._eager(inputs)
        key = _signature(inputs)
        record = self._records.get(key)
        if record is None:
            if len(self._uses) >= _MAX_PENDING:  # shapes that never repeat must not pile up
                self._uses.clear()
            uses = self._uses.get(key, 0) + 1
            self._uses[key] = uses
            if uses < self.trace_after:
                return self._eager(inputs)
            record = self._trace(key, inputs)
        else:
            self._records.move_to_end(key)
        if isinstance(record, str):
            return self._eager(inputs)
        output: torch.Tensor = record(*inputs)
        return output

    def _eager(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        output: torch.Tensor = self.module(*inputs)
        return output

    def _trace(self, key: Signature, inputs: tuple[torch.Tensor, ...]) -> Callable[..., Any] | str:
        record: Callable[..., Any] | str
        try:
            with warnings.catch_warnings():
                # torch.jit is deprecated in favour of torch.compile, which costs seconds to
                # compile and gains less on these models; the tracer also warns about every
                # shape branch, which is why records are made per signature
                warnings.simplefilter("ignore")
                record = torch.jit.trace(self.module, inputs, check_trace=False)
        except Exception as exc:  # noqa: BLE001 - any tracer failure: this signature runs eagerly
            log.info("cannot trace %s for %s, running it eagerly: %s", self.name, key, exc)
            record = _EAGER
        self._records[key] = record
        self._uses.pop(key, None)
        while len(self._records) > self.max_traces:
            self._records.popitem(last=False)
        return record


def _signature(inputs: tuple[torch.Tensor, ...]) -> Signature:
    return tuple((tuple(t.shape), t.dtype, str(t.device)) for t in inputs)


def _hooked(module: torch.nn.Module) -> bool:
    """Whether forward hooks watch the module or the model it wraps (or every module)."""
    from torch.nn.modules import module as nn_module

    if nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in (module, *module.children()))
