"""`measure`: observe any `nn.Module` through forward hooks on its nonlinearities.

One forward pass on the probe batch records, for every call of every nonlinearity module, its
input (the preactivation, after LayerNorm where the network has one) and its output; a second,
functional pass over a small batch gives the empirical NTK. The model is left exactly as found.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from probes import metrics

NONLINEARITIES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Tanh, nn.Sigmoid,
    nn.Softplus, nn.Softsign, nn.LogSigmoid, nn.Tanhshrink, nn.Threshold,
)  # fmt: skip
"""Module types whose calls are probed; an `nn.Hardtanh` subclass (ReLU6) or any other listed."""

JACOBIAN_BUDGET = 2**25
"""Most Jacobian entries (float32: 128 MiB) held at once; outputs are chunked to stay under it."""

GRAM_COLUMNS = 2**23
"""Jacobian entries cast to float64 at once while accumulating the NTK Gram matrix."""

Readout = Callable[[Tensor], Tensor]
"""Maps a model output [B, ...] to the values whose NTK is taken, [B, ...]."""


@dataclass
class LayerRecord:
    """What one call of one nonlinearity showed: per-unit statistics and preactivation moments."""

    key: str
    positive_rate: Tensor
    preact_mean: float
    preact_std: float
    mean_abs: Tensor | None = None


class _Recorder:
    """Forward (pre-)hooks that reduce each nonlinearity call to a `LayerRecord` as it happens.

    The preactivation is read in a pre-hook because an in-place nonlinearity (`ReLU(inplace=True)`)
    overwrites its input before a forward hook could see it. A module called k > 0 times before in
    this pass is keyed `<name>#k`: calls of a reused module may differ in shape, so they are kept
    apart rather than concatenated.
    """

    def __init__(self) -> None:
        self.records: list[LayerRecord] = []
        self.features: Tensor | None = None
        self._calls: dict[str, int] = {}
        self._open: dict[str, LayerRecord] = {}

    def attach(self, model: nn.Module) -> list[torch.utils.hooks.RemovableHandle]:
        handles = []
        for name, module in model.named_modules():
            if isinstance(module, NONLINEARITIES):
                name = name or "root"
                handles.append(module.register_forward_pre_hook(self._pre_hook(name)))
                handles.append(module.register_forward_hook(self._post_hook(name)))
        return handles

    def _pre_hook(self, name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            if not args or not isinstance(args[0], Tensor):
                return
            calls = self._calls.get(name, 0)
            self._calls[name] = calls + 1
            z = args[0].detach().float()
            record = LayerRecord(
                key=name if calls == 0 else f"{name}#{calls}",
                positive_rate=metrics.per_unit_mean(z > 0),
                preact_mean=float(z.mean()),
                preact_std=float(z.std(correction=0)) if z.numel() > 0 else 0.0,
            )
            self.records.append(record)
            self._open[name] = record

        return hook

    def _post_hook(self, name: str):
        def hook(module: nn.Module, args: tuple, output: Tensor) -> None:
            record = self._open.pop(name, None)
            if record is None or not isinstance(output, Tensor):
                return
            a = output.detach()
            record.mean_abs = metrics.per_unit_mean(a.abs())
            # Kept until a later nonlinearity replaces it: the last one gives the features.
            self.features = a.clone()

        return hook


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put `model` in eval mode; on exit restore every module's own train/eval flag (flags may
    differ between submodules, so `model.train(was_training)` would not restore them)."""
    modes = {module: module.training for module in model.modules()}
    try:
        model.eval()
        yield
    finally:
        for module, training in modes.items():
            module.training = training


def record(model: nn.Module, inputs: Tensor) -> tuple[_Recorder, Tensor]:
    """One no-grad forward pass with hooks on every nonlinearity; the hooks are gone on return."""
    recorder = _Recorder()
    handles = recorder.attach(model)
    try:
        with torch.no_grad():
            output = model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return recorder, output


def ntk_gram(
    model: nn.Module, inputs: Tensor, num_outputs: int, readout: Readout | None = None
) -> Tensor:
    """Trace NTK on `inputs` [n, ...]: K_ij = Σ_o ⟨∂f_o(x_i)/∂θ, ∂f_o(x_j)/∂θ⟩, float64 [n, n].

    f is the model's output flattened per example (O = `num_outputs` values: [A] or [A, K]), θ its
    trainable parameters. Summing over outputs keeps K at n×n whatever the head (a C51 head has
    O = A·K); it is the trace over outputs of the full (n·O)×(n·O) empirical NTK (Jacot et al.
    2018). `readout`, if given, maps the model's output to the values whose NTK is taken (e.g. a
    distributional head's logits to its Q-values).

    K is a sum over parameters, taken in two parts. The fully connected layers (`nn.Linear` called
    once, on [n, features]) hold most parameters, and their Jacobians are never formed: a weight's
    per-example gradient for output o is the outer product g_io x_iᵀ of the gradient at the
    layer's output and the layer's input, so the weight adds Σ_o (g_io·g_jo)(x_i·x_j) to K_ij and
    the bias Σ_o g_io·g_jo (`_linear_gram`). The other parameters' per-example Jacobians come from
    torch.func (`_jacobian_gram`). The model is taken in eval mode, and must treat the examples of
    a batch independently there (as every network of this suite does).
    """
    n = inputs.shape[0]
    gram = torch.zeros(n, n, dtype=torch.float64, device=inputs.device)
    if n == 0:
        return gram
    with eval_mode(model):
        params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
        factored = _linear_gram(model, inputs, num_outputs, readout, gram)
        rest = {
            k for k, p in params.items() if k.rpartition(".")[0] not in factored and p.numel() > 0
        }
        if rest:
            _jacobian_gram(model, params, rest, inputs, num_outputs, readout, gram)
    return gram


def _linear_gram(
    model: nn.Module, inputs: Tensor, num_outputs: int, readout: Readout | None, gram: Tensor
) -> set[str]:
    """Add the trainable `nn.Linear` layers' part of the NTK to `gram`; returns their names.

    One forward pass records each layer's input and output; for each output o, one backward pass
    of Σ_i f_o(x_i) gives every g_io at once, since examples do not interact. A layer called more
    than once, on other than [n, features], or sharing a parameter with another module, is left to
    `_jacobian_gram`."""
    n = inputs.shape[0]
    calls: dict[str, list[tuple[Tensor, Tensor]]] = {}

    def keep(name: str):
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Tensor) -> Tensor:
            layer_input = args[0] if args else kwargs["input"]
            calls.setdefault(name, []).append((layer_input.detach(), output))
            # Downstream gets a copy: an in-place op after the layer (ReLU(inplace=True)) would
            # otherwise rewrite the output whose gradient is g.
            return output.clone()

        return hook

    uses = Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))
    linears = {
        name: m
        for name, m in model.named_modules()
        if type(m) is nn.Linear
        and m.weight.requires_grad
        and all(uses[id(p)] == 1 for p in m.parameters())
    }
    handles = [m.register_forward_hook(keep(name), with_kwargs=True) for name, m in linears.items()]
    with torch.enable_grad():  # whatever the caller's grad mode
        try:
            output = model(inputs)
        finally:
            for handle in handles:
                handle.remove()
        factored = {
            name: call[0]
            for name, call in calls.items()
            if len(call) == 1 and call[0][0].ndim == 2 and call[0][0].shape[0] == n
        }
        values = (output if readout is None else readout(output)).reshape(n, -1)
        if not factored or not values.requires_grad:
            return set()
        layer_outputs = [y for _, y in factored.values()]
        input_grams = [x.double() @ x.double().T for x, _ in factored.values()]
        with_bias = [_bias_trained(linears[name]) for name in factored]
        for o in range(num_outputs):
            grads = torch.autograd.grad(
                values[:, o].sum(), layer_outputs, retain_graph=True, allow_unused=True
            )
            for g, xx, bias in zip(grads, input_grams, with_bias, strict=True):
                if g is None:  # a layer this output does not depend on adds nothing
                    continue
                gg = g.double() @ g.double().T
                gram.add_(gg * xx)
                if bias:
                    gram.add_(gg)
    return set(factored)


def _bias_trained(layer: nn.Linear) -> bool:
    """Whether the layer has a bias that is trained, and so is part of θ."""
    return layer.bias is not None and layer.bias.requires_grad


def _jacobian_gram(
    model: nn.Module,
    params: dict[str, Tensor],
    names: set[str],
    inputs: Tensor,
    num_outputs: int,
    readout: Readout | None,
    gram: Tensor,
) -> None:
    """Add the part of the NTK of the parameters `names` (the others held fixed) to `gram`, from
    per-example Jacobians (vmap of jacrev) in chunks of outputs, so that at most
    `JACOBIAN_BUDGET` entries are held at once; a model vmap cannot batch (data-dependent control
    flow, `.item()`) falls back to jacrev one example at a time."""
    n = inputs.shape[0]
    chunk = max(1, JACOBIAN_BUDGET // (n * sum(params[k].numel() for k in names)))
    for lo in range(0, num_outputs, chunk):
        hi = min(lo + chunk, num_outputs)
        jacobians = _jacobians(model, params, names, inputs, lo, hi, readout)
        for jacobian in jacobians.values():
            # Rows are examples; columns (outputs × parameter entries) sum into K_ij.
            for columns in jacobian.reshape(n, -1).split(max(1, GRAM_COLUMNS // n), dim=1):
                columns = columns.double()
                gram.addmm_(columns, columns.T)


def _jacobians(
    model: nn.Module,
    params: dict[str, Tensor],
    names: set[str],
    inputs: Tensor,
    lo: int,
    hi: int,
    readout: Readout | None = None,
) -> dict[str, Tensor]:
    """∂f_{lo:hi}(x_i)/∂θ of the parameters `names` for every example, the other `params` held
    fixed: {name: [n, hi − lo, *param.shape]}."""
    varied = {k: params[k] for k in names}
    fixed = {k: p for k, p in params.items() if k not in names}

    def outputs(p: dict[str, Tensor], x: Tensor) -> Tensor:
        out = functional_call(model, {**fixed, **p}, (x.unsqueeze(0),))
        return (out if readout is None else readout(out)).reshape(-1)[lo:hi]

    try:
        return vmap(jacrev(outputs), in_dims=(None, 0))(varied, inputs)
    except (RuntimeError, NotImplementedError):
        per_example = [jacrev(outputs)(varied, x) for x in inputs]
        return {k: torch.stack([j[k] for j in per_example]) for k in varied}


def unit_metrics(
    records: list[LayerRecord], dormancy: dict[str, float], threshold: float
) -> dict[str, float]:
    """τ-dormant fractions (`dormancy`: {key: τ}, e.g. dormant_fraction at 0.025, dead_fraction
    at 0), linearized fractions and preactivation moments, per layer and whole.

    Whole-network fractions pool units (each unit of each layer counts once); whole-network
    preactivation mean and std are the mean over layers of the per-layer figures, so a wide conv
    layer's positions do not drown the dense layers.
    """
    out: dict[str, float] = {}
    totals = dict.fromkeys([*dormancy, "linearized_fraction"], 0)
    units = dict.fromkeys(totals, 0)
    for r in records:
        mean_abs = r.mean_abs if r.mean_abs is not None else torch.zeros_like(r.positive_rate)
        masks = {key: metrics.dormant_mask(mean_abs, tau) for key, tau in dormancy.items()}
        masks["linearized_fraction"] = metrics.linearized_mask(r.positive_rate, threshold)
        # Dormancy counts output units, linearity preactivation units: a CReLU has 2 per unit.
        for metric, mask in masks.items():
            out[f"{metric}/{r.key}"] = int(mask.sum()) / mask.numel()
            totals[metric] += int(mask.sum())
            units[metric] += mask.numel()
        out[f"preact_mean/{r.key}"] = r.preact_mean
        out[f"preact_std/{r.key}"] = r.preact_std
    if records:
        out.update({metric: count / units[metric] for metric, count in totals.items()})
        out["preact_mean"] = sum(r.preact_mean for r in records) / len(records)
        out["preact_std"] = sum(r.preact_std for r in records) / len(records)
    return out


def param_norms(model: nn.Module) -> dict[str, float]:
    """‖θ‖₂ of the whole model, and of the parameters each module owns directly."""
    out = {"param_norm": metrics.l2_norm(list(model.parameters()))}
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if own:
            out[f"param_norm/{name or 'root'}"] = metrics.l2_norm(own)
    return out


def feature_metrics(features: Tensor, delta: float) -> dict[str, float]:
    """Norm, srank_δ and effective rank of the penultimate features φ(x), flattened to [B, D]."""
    phi = features.reshape(features.shape[0], -1) if features.dim() > 0 else features.reshape(1, 1)
    phi = phi.double()
    sigma = torch.linalg.svdvals(phi)
    return {
        "feature_norm": float(phi.norm(dim=1).mean()) if phi.shape[0] > 0 else 0.0,
        "feature_rank": float(metrics.srank(sigma, delta)),
        "effective_rank": metrics.effective_rank(sigma),
    }


def ntk_metrics(gram: Tensor, jacobian_dtype: torch.dtype) -> dict[str, float]:
    """Numerical rank and extreme eigenvalues of the NTK Gram matrix, and its condition number
    λ_max/λ_min only where it is a measurement: at full rank. A numerically singular Gram (two
    equal states, or a collapsed network) gets no ntk_condition, whose value would be the
    round-off ratio rather than the network's; its rank and λ_min say how singular it is."""
    eigenvalues = torch.linalg.eigvalsh(gram)
    rtol = metrics.gram_rank_rtol(gram.shape[0], jacobian_dtype)
    rank = metrics.numerical_rank(eigenvalues, rtol)
    figures = {
        "ntk_rank": float(rank),
        "ntk_lambda_max": float(eigenvalues.max().clamp_min(0.0)),
        "ntk_lambda_min": float(eigenvalues.min().clamp_min(0.0)),
    }
    if rank == gram.shape[0]:
        figures["ntk_condition"] = metrics.condition_number(eigenvalues)
    return figures


def measure(
    model: nn.Module,
    inputs: Tensor,
    *,
    tau: float = 0.025,
    redo_tau: float | None = None,
    linear_threshold: float = 0.99,
    srank_delta: float = 0.01,
    ntk_batch: int = 32,
    ntk_readout: Readout | None = None,
) -> dict[str, float]:
    """Plasticity probes of `model` on the probe batch `inputs` (passed to the model as they are).

    The model is measured in eval mode (the function the agent acts with: no dropout, BatchNorm
    on running statistics, which eval mode also leaves unchanged) and then left exactly as found:
    every module's train/eval flag, parameters, buffers and `.grad`, no hooks, grad mode.

    Args:
        model: any module whose nonlinearities are modules (see `NONLINEARITIES`).
        inputs: [B, ...] batch; the first `ntk_batch` rows also give the NTK.
        tau: the dormancy threshold of dormant_fraction. redo_tau: when given, also
            redo_dormant_fraction at this τ (the units a ReDo run recycles).
        linear_threshold: share of positive preactivations that makes a unit linearized.
        srank_delta: δ of srank_δ. ntk_batch: 0 skips the NTK keys.
        ntk_readout: maps the model's output to the values whose NTK is taken (default: the
            output itself); e.g. Q-values of a distributional head, A values instead of A·K.

    Returns:
        {key: value}, finite. Whole-network keys: dormant_fraction, dead_fraction,
        linearized_fraction, preact_mean, preact_std, param_norm, feature_norm, feature_rank,
        effective_rank, ntk_rank, ntk_lambda_max, ntk_lambda_min, and ntk_condition where the NTK
        has full rank. Per layer, `<metric>/<module name>` for the first
        five (a reused module's k-th call is `<name>#k`) and param_norm (modules owning parameters).
        A model without nonlinearity modules gets only the param_norm and NTK keys.
    """
    with eval_mode(model):
        recorder, output = record(model, inputs)
        dormancy = {"dormant_fraction": tau, "dead_fraction": 0.0}
        if redo_tau is not None:
            dormancy["redo_dormant_fraction"] = redo_tau
        results = unit_metrics(recorder.records, dormancy, linear_threshold)
        results.update(param_norms(model))
        if recorder.features is not None:
            results.update(feature_metrics(recorder.features, srank_delta))
        if ntk_batch > 0:
            read = output if ntk_readout is None else ntk_readout(output)
            gram = ntk_gram(model, inputs[:ntk_batch], read[0].numel(), ntk_readout)
            results.update(ntk_metrics(gram, output.dtype))
    return results
