"""K networks of one structure run as one: their parameters and buffers stacked along a leading
member axis, so that a forward pass over all members' inputs [K, B, ...] is one call.

Each member keeps its own module, whose tensors become views of the stacks (`tensor.data =
stack[k]`): whatever reads or writes a member in place (probes, interventions, load_state_dict,
evaluation, checkpoints) sees and changes the stacked values, and the stacks are what the
stacked forward and its gradients use. A single member is aliased without a copy
(`p.detach().unsqueeze(0)`), so a group of one costs nothing and leaves its module untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call


def stack_into(tensors: Sequence[Tensor]) -> Tensor:
    """The members' tensors (K > 1) as one new [K, ...] tensor, each member's tensor re-pointed
    at its slice (the Parameter objects stay, so optimisers still hold them)."""
    stacked = torch.stack([t.detach() for t in tensors])
    for k, tensor in enumerate(tensors):
        tensor.data = stacked[k]
    return stacked


class Stacked:
    """The stacked parameters and buffers of `members` (same structure), and their forward.

    A single member is not copied: its stacks are views `p.unsqueeze(0)` of its own tensors,
    made at each use, its forward is its module's own call, and gradients land in its own
    `.grad`; so a group of one runs the code and the speed of a plain network.

    Args:
        vectorize: run K > 1 members with torch.vmap (one kernel per layer for all of them)
            rather than one functional call each over the same stacks. vmap turns a convolution
            with batched weights into a grouped one, which on a CPU measured 2.3x slower than K
            separate convolutions for the Nature CNN (README, "Many seeds"); the caller decides.
        single: a single member's forward when it is not its module's call (torch.compile's).
    """

    def __init__(
        self,
        members: Sequence[nn.Module],
        *,
        vectorize: bool = True,
        single: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        self.members = list(members)
        self.vectorize = vectorize
        self.single = single or self.members[0]
        self.restack()

    def __len__(self) -> int:
        return len(self.members)

    def restack(self) -> None:
        """Stack the members' tensors again: after a change of structure (an injected head), or
        after something replaced a member's tensors rather than writing into them. The owner
        calls it (agents.group.SeedGroup.restack); a forward never checks, to stay cheap."""
        self.params: dict[str, Tensor] = {}
        self.buffers: dict[str, Tensor] = {}
        # The first member's own tensors by name, walked once here rather than at every use.
        self.named = list(self.members[0].named_parameters())
        self.named_buffers = list(self.members[0].named_buffers())
        if len(self.members) == 1:
            return
        for member in self.members:  # the stacks keep torch's default layout: so do the inputs
            if hasattr(member, "input_format"):
                member.input_format = torch.contiguous_format
        named = [dict(m.named_parameters()) for m in self.members]
        self.params = {
            name: stack_into([n[name] for n in named]).requires_grad_(param.requires_grad)
            for name, param in named[0].items()
        }
        buffers = [dict(m.named_buffers()) for m in self.members]
        self.buffers = {name: stack_into([b[name] for b in buffers]) for name in buffers[0]}

    def tensors(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """({name: [K, ...] parameter}, {name: [K, ...] buffer})."""
        if len(self.members) > 1:
            return self.params, self.buffers
        return (
            {n: p.unsqueeze(0) for n, p in self.named},
            {n: b.unsqueeze(0) for n, b in self.named_buffers},
        )

    def trainable(self) -> dict[str, Tensor]:
        return {name: p for name, p in self.tensors()[0].items() if p.requires_grad}

    def grads(self) -> dict[str, Tensor]:
        """{name: [K, ...] gradient} of the trainable parameters that have one (writable views:
        scaling them scales what the optimiser reads)."""
        if len(self.members) > 1:
            return {n: p.grad for n, p in self.params.items() if p.grad is not None}
        return {n: p.grad.unsqueeze(0) for n, p in self.named if p.grad is not None}

    def zero_grad(self) -> None:
        stacks = self.params.values() if len(self.members) > 1 else [p for _, p in self.named]
        for p in stacks:
            p.grad = None

    def __call__(self, inputs: Tensor) -> Tensor:
        """Every member on its own inputs: [K, B, ...] -> [K, B, ...outputs]."""
        if len(self.members) == 1:
            return self.single(inputs[0]).unsqueeze(0)
        if self.vectorize:
            return torch.vmap(self.member)(self.params, self.buffers, inputs)
        return torch.stack([self.member(*self.slice(k), x) for k, x in enumerate(inputs)])

    def slice(self, k: int) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Member k's parameters and buffers, as views of the stacks (gradients reach them)."""
        return (
            {n: p[k] for n, p in self.params.items()},
            {n: b[k] for n, b in self.buffers.items()},
        )

    def member(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
        """One member's forward on the given tensors (member 0's module, in its train/eval mode,
        is the template: every member has its structure)."""
        return functional_call(self.members[0], (params, buffers), (x,))

    @torch.no_grad()
    def copy_from(self, source: Stacked, members: Sequence[int]) -> None:
        """θ̄ ← θ for the given members (a hard target update), from a stack of the same
        structure."""
        mine, theirs = self.tensors(), source.tensors()
        index = torch.as_tensor(list(members), device=next(iter(mine[0].values())).device)
        for store, values in zip(mine, theirs, strict=True):
            for name, tensor in store.items():
                tensor.index_copy_(0, index, values[name].index_select(0, index))
