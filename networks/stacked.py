"""K networks of one structure run as one: their parameters and buffers stacked along a leading
member axis, so that a forward pass over all members' inputs [K, B, ...] is one call per layer.

Each member keeps its own module, whose tensors become views of the stacks (`tensor.data =
stack[k]`): whatever reads or writes a member in place (probes, interventions, load_state_dict,
evaluation, checkpoints) sees and changes the stacked values, and the stacks are what the
stacked forward and its gradients use.

The stacked forward is a copy of the first member's module in which every layer with parameters
is replaced by its member-axis form (`MemberLinear`, `MemberConv2d`, ...), reading the stacks;
the rest of the network (nonlinearities, flattening, the heads' reshapes) runs unchanged on the
members' rows laid end to end, [K·B, ...], which it cannot tell from one batch. Measured on a
CPU, this is what makes a batch of small networks cheap: torch.vmap over
torch.func.functional_call costs ~1 ms of Python per call for the classic MLP, more than the
network's own arithmetic (README, "Many seeds").

A single member is not copied: its forward is its module's own call and gradients land in its
own `.grad`, so a group of one runs the code and the speed of a plain network.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from configs.errors import UserError
from networks.noisy import NoisyLinear


def stack_into(tensors: Sequence[Tensor]) -> Tensor:
    """The members' tensors (K > 1) as one new [K, ...] tensor, each member's tensor re-pointed
    at its slice (the Parameter objects stay, so optimisers still hold them). Conv kernels kept
    in the channels-last layout (train.channels_last) stay in it: each slice is a channels-last
    kernel, for which oneDNN's convolutions measured 1.6x faster (Nature CNN update, CPU)."""
    first = tensors[0]
    if first.ndim == 4 and first.is_contiguous(memory_format=torch.channels_last):
        out, channels, height, width = first.shape
        empty = first.new_empty((len(tensors), out, height, width, channels))
        stacked = empty.permute(0, 1, 4, 2, 3).copy_(torch.stack([t.detach() for t in tensors]))
    else:
        stacked = torch.stack([t.detach() for t in tensors])
    for k, tensor in enumerate(tensors):
        tensor.data = stacked[k]
    return stacked


class MemberLayer(nn.Module):
    """A layer of the stacked forward: reads its [K, ...] tensors from the stacks by the name
    its member modules give them."""

    def __init__(self, stacked: Stacked, prefix: str) -> None:
        super().__init__()
        self.stacked, self.prefix = (stacked,), prefix  # a tuple: not a submodule

    def tensor(self, name: str) -> Tensor:
        stacked = self.stacked[0]
        key = self.prefix + name
        return stacked.params[key] if key in stacked.params else stacked.buffers[key]

    def members(self) -> int:
        return len(self.stacked[0].members)


class MemberLinear(MemberLayer):
    """y_k = x_k W_kᵀ + b_k for every member k, as one batched matrix product."""

    def forward(self, x: Tensor) -> Tensor:
        return member_affine(x, self.tensor("weight"), self.tensor("bias"), self.members())


def member_affine(x: Tensor, weight: Tensor, bias: Tensor, members: int) -> Tensor:
    """[K·B, in] rows through [K, out, in] weights and [K, out] biases -> [K·B, out]."""
    rows = x.reshape(members, -1, x.shape[-1])
    return MemberAffine.apply(rows, weight, bias).flatten(0, 1)


class MemberAffine(torch.autograd.Function):
    """y_k = x_k W_kᵀ + b_k, whose backward computes the weight's gradient as (∂y_k)ᵀ x_k, laid
    out as the weight is ([K, out, in]) and as F.linear computes it for one member. Autograd's
    own backward of the batched product gives it transposed, and copying it into place measured
    13 ms a step for the Nature CNN's 3136 x 512 layer at K = 2, more than its arithmetic."""

    @staticmethod
    def forward(rows: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        return torch.baddbmm(bias.unsqueeze(1), rows, weight.transpose(1, 2))

    @staticmethod
    def setup_context(ctx, inputs: tuple, output: Tensor) -> None:
        rows, weight, _ = inputs
        ctx.save_for_backward(rows, weight)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        rows, weight = ctx.saved_tensors
        return grad.bmm(weight), grad.transpose(1, 2).bmm(rows), grad.sum(1)


class MemberNoisyLinear(MemberLayer):
    """networks.noisy.NoisyLinear per member, each with its own noise ε_in, ε_out (in train mode;
    its mean μ in eval mode, as the layer)."""

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self.tensor("weight_mu"), self.tensor("bias_mu")
        if self.training:
            eps_in, eps_out = self.tensor("eps_in"), self.tensor("eps_out")
            outer = eps_out[:, :, None] * eps_in[:, None]  # ε_out ε_inᵀ first, as the layer does
            weight = weight + self.tensor("weight_sigma") * outer
            bias = bias + self.tensor("bias_sigma") * eps_out
        return member_affine(x, weight, bias, self.members())


class MemberLayerNorm(MemberLayer):
    """networks.torsos.LayerNorm per member: normalise, then each member's gain and shift."""

    def __init__(self, stacked: Stacked, prefix: str, norm: nn.LayerNorm) -> None:
        super().__init__(stacked, prefix)
        self.shape, self.eps = tuple(norm.normalized_shape), norm.eps

    def forward(self, x: Tensor) -> Tensor:
        normalized = F.layer_norm(x, self.shape, None, None, self.eps)
        rows = normalized.reshape(self.members(), -1, *self.shape)
        gain, shift = (self.tensor(n).unsqueeze(1) for n in ("weight", "bias"))
        return (rows * gain + shift).flatten(0, 1)


class MemberConv2d(MemberLayer):
    """Each member's convolution on its own rows: one grouped convolution (a group per member)
    on maps of at most GROUPED_PIXELS pixels, one call per member on larger ones. Measured on
    a 2-core CPU at K = 8: grouped was 20% faster for MinAtar's 10x10 maps and 2.3x slower for
    the Nature CNN, whose first layer reads 84x84 frames (README, "Many seeds")."""

    GROUPED_PIXELS = 100

    def __init__(self, stacked: Stacked, prefix: str, conv: nn.Conv2d) -> None:
        super().__init__(stacked, prefix)
        self.stride, self.padding = conv.stride, conv.padding

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self.tensor("weight"), self.tensor("bias")
        members = self.members()
        if x.shape[-1] * x.shape[-2] <= self.GROUPED_PIXELS:
            # [K·B, C, H, W] -> [B, K·C, H, W]: member k's channels are group k
            rows = x.reshape(members, -1, *x.shape[1:]).transpose(0, 1).flatten(1, 2)
            out = F.conv2d(
                rows,
                weight.flatten(0, 1),
                bias.flatten(),
                stride=self.stride,
                padding=self.padding,
                groups=members,
            )
            return out.unflatten(1, (members, -1)).transpose(0, 1).flatten(0, 1)
        rows = x.reshape(members, -1, *x.shape[1:])
        outputs = [
            F.conv2d(r, w, b, stride=self.stride, padding=self.padding)
            for r, w, b in zip(rows, weight, bias, strict=True)
        ]
        return torch.cat(outputs)


def member_layer(stacked: Stacked, prefix: str, module: nn.Module) -> nn.Module:
    """The member-axis form of one of the suite's layers with parameters."""
    if isinstance(module, NoisyLinear):
        return MemberNoisyLinear(stacked, prefix)
    if isinstance(module, nn.Linear):
        return MemberLinear(stacked, prefix)
    if isinstance(module, nn.LayerNorm):
        return MemberLayerNorm(stacked, prefix, module)
    if isinstance(module, nn.Conv2d):
        return MemberConv2d(stacked, prefix, module)
    raise UserError(
        f"{type(module).__name__} ({prefix.rstrip('.')}) has no member-axis form in "
        "networks.stacked, so several seeds cannot share a process with it: train them "
        "separately (--seed), or add one there."
    )


def member_network(stacked: Stacked, template: nn.Module) -> nn.Module:
    """A copy of `template` whose layers with parameters are their member-axis forms."""
    network = copy.deepcopy(template)
    parametrised = [
        (name, module)
        for name, module in network.named_modules()
        if name and list(module.parameters(recurse=False))
    ]
    for name, module in parametrised:
        parent, _, leaf = name.rpartition(".")
        owner = network.get_submodule(parent) if parent else network
        setattr(owner, leaf, member_layer(stacked, f"{name}.", module))
    return network.train()


class Stacked:
    """The stacked parameters and buffers of `members` (same structure), and their forward.

    Args:
        single: a single member's forward when it is not its module's call (torch.compile's).
    """

    def __init__(
        self, members: Sequence[nn.Module], *, single: Callable[[Tensor], Tensor] | None = None
    ) -> None:
        self.members = list(members)
        self.single = single if single is not None else self.members[0]
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
        named = [dict(m.named_parameters()) for m in self.members]
        self.params = {
            name: stack_into([n[name] for n in named]).requires_grad_(param.requires_grad)
            for name, param in named[0].items()
        }
        buffers = [dict(m.named_buffers()) for m in self.members]
        self.buffers = {name: stack_into([b[name] for b in buffers]) for name in buffers[0]}
        self.network = member_network(self, self.members[0])

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
        output = self.network(inputs.flatten(0, 1))
        return output.view(len(self.members), -1, *output.shape[1:])

    @torch.no_grad()
    def copy_from(self, source: Stacked, members: Sequence[int]) -> None:
        """θ̄ ← θ for the given members (a hard target update), from a stack of the same
        structure."""
        mine, theirs = self.tensors(), source.tensors()
        index = torch.as_tensor(list(members), device=next(iter(mine[0].values())).device)
        for store, values in zip(mine, theirs, strict=True):
            for name, tensor in store.items():
                tensor.index_copy_(0, index, values[name].index_select(0, index))
