"""Typed, frozen configuration. The YAML files in this folder hold the values (with their sources);
these dataclasses say what each key means and what type it takes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Loss = Literal["huber", "mse", "c51", "two_hot", "hl_gauss"]
ValueTransform = Literal["none", "signed_hyperbolic"]
Device = Literal["auto", "cpu", "cuda"]
InitScheme = Literal["torch", "xavier_uniform", "variance_scaling"]


@dataclass(frozen=True)
class EnvConfig:
    id: str
    """Game or env id: `Pong`, `pong`, `ALE/Pong-v5`, or a classic-control id like `CartPole-v1`."""
    num_envs: int
    """Vector environments stepped together; acting is one batched forward over all of them."""
    sticky_actions: float
    """Probability of repeating the previous action (Machado et al. 2018)."""
    frame_skip: int
    """Emulator frames per agent step, max-pooled over the last two."""
    frame_stack: int
    """Frames stacked into one observation."""
    noop_max: int
    """Up to this many no-op actions at the start of an episode (0: sticky actions alone add the
    randomness, as Machado et al. 2018 and Dopamine do)."""
    full_action_space: bool
    """All 18 joystick actions instead of the game's minimal action set."""
    max_episode_frames: int
    """Emulator frames after which an episode is truncated (108,000 = 30 minutes of play)."""
    terminal_on_life_loss: bool
    """Treat the loss of a life as a terminal transition for learning (the game goes on)."""
    fire_reset: bool
    """Press FIRE after a reset in games that need it."""
    clip_rewards: bool
    """Clip the rewards the agent learns from to [-1, 1]; logged returns are always raw scores."""
    switch_every: int
    """Continual MinAtar (`--env` lists several games): agent steps each game is played before the
    next one's turn, cycling through the list; 0 (one game) never switches."""


@dataclass(frozen=True)
class NetworkConfig:
    layer_norm: bool
    """LayerNorm before every hidden nonlinearity (conv layers: over C, H, W of each sample)."""
    mlp_hidden: tuple[int, ...]
    """Hidden widths of the MLP torso used for vector observations."""
    cnn_hidden: int
    """Width of the fully connected layer after the Nature CNN's convolutions."""
    num_atoms: int
    """Atoms (bins) of the categorical heads."""
    v_min: float
    """Lowest atom of the categorical support (in transformed units when a transform is on)."""
    v_max: float
    """Highest atom of the categorical support."""
    dueling: bool
    """Dueling head: value and advantage streams, Q = V + A - mean_a A (per atom for categorical
    heads; Wang et al. 2016)."""
    noisy: bool
    """Factorised Gaussian noisy layers in place of every fully connected layer, the torso's and the
    head's (Fortunato et al. 2018)."""
    noisy_sigma0: float
    """Initial noise scale sigma_0: each sigma starts at sigma_0 / sqrt(fan_in)."""
    init: InitScheme
    """Weight init of Linear and conv layers: `xavier_uniform` with zero biases (Dopamine's JAX
    DQN), `variance_scaling` (Dopamine's C51) or `torch` (PyTorch's default, CleanRL's)."""
    nonlinearity: Literal["relu", "crelu"]
    """Hidden nonlinearity: `relu`, or `crelu` = [relu(z), relu(-z)] with every hidden width
    scaled by 1/sqrt(2), which keeps the parameter count close to ReLU's (Abbas et al. 2023)."""


@dataclass(frozen=True)
class AgentConfig:
    loss: Loss
    """Value head and loss: scalar `huber`/`mse`, or categorical `c51`/`two_hot`/`hl_gauss`."""
    gamma: float
    """Discount factor."""
    n_step: int
    """Steps summed before bootstrapping."""
    double: bool
    """Double-DQN: the online network picks the next action, the target network values it."""
    value_transform: ValueTransform
    """Squash TD targets with h(x) = sign(x)(sqrt(|x|+1)-1)+eps*x (Pohlen et al. 2018)."""
    sigma_ratio: float
    """HL-Gauss sigma as a multiple of the bin width."""
    lr: float
    """Adam learning rate."""
    adam_eps: float
    """Adam epsilon."""
    weight_decay: float
    """Decoupled weight decay (AdamW); 0 gives plain Adam."""
    l2: float
    """Coupled L2 penalty coefficient: loss += l2 * sum of squared parameters."""
    regen: float
    """Regenerative regularisation: loss += regen * sum of squared distances of the parameters
    from their initial values (L2 Init, Kumar et al. 2023); 0 is off."""
    regularize: Literal["weights", "all"]
    """Parameters that L2 and weight decay cover: `weights` (matrices and kernels) or `all`."""
    max_grad_norm: float
    """Clip the gradient's global norm to this; 0 turns clipping off."""
    batch_size: int
    """Transitions per update."""
    train_interval: int
    """Environment steps (summed over envs) between updates."""
    target_update_interval: int
    """Environment steps between hard copies of the online network into the target network."""
    learning_starts: int
    """Environment steps of random acting before the first update."""
    epsilon_start: float
    """Exploration rate at step 0."""
    epsilon_end: float
    """Exploration rate at the end of the decay."""
    epsilon_decay_steps: int
    """Environment steps over which epsilon decays linearly."""
    eval_epsilon: float
    """Exploration rate when evaluating."""


@dataclass(frozen=True)
class ReplayConfig:
    capacity: int
    """Transitions kept."""
    save_contents: bool
    """Write the replay contents into checkpoints (large for Atari) so a resume keeps them."""
    prioritized: bool
    """Proportional prioritized sampling with importance-sampling weights (Schaul et al. 2016)."""
    priority_exponent: float
    """alpha: slots are drawn with probability p_i^alpha / sum_k p_k^alpha (0 is uniform)."""
    importance_exponent: float
    """beta: loss weights (N P(i))^-beta / max_j w_j, fixed over the run (0: no correction)."""


@dataclass(frozen=True)
class TrainConfig:
    total_steps: int
    """Environment steps (summed over envs) to train for."""
    seed: int
    """Seeds torch, numpy, the environments and the replay sampler."""
    device: Device
    """`auto` takes CUDA when available."""
    checkpoint_interval: int
    """Environment steps between checkpoints (one is always written at the end)."""
    keep_checkpoints: int
    """Most recent checkpoints kept on disk."""
    log_interval: int
    """Environment steps between loss and Q-value logs."""
    threads: int
    """torch intra-op threads on the CPU; 0 keeps torch's default."""
    pin_memory: bool
    """Copy replay batches through page-locked memory with non-blocking transfers (CUDA only)."""
    compile: bool
    """torch.compile the networks' forward passes for acting and learning."""
    amp: bool
    """Mixed precision: forward passes under bfloat16 autocast; losses stay in float32."""
    channels_last: bool
    """Conv kernels and image inputs in the NHWC memory layout: the same float32 math, faster
    oneDNN convolutions on a CPU; no effect on networks without conv layers."""


@dataclass(frozen=True)
class ProbeConfig:
    enabled: bool
    """Measure and log the plasticity probes."""
    interval: int
    """Environment steps between probe measurements."""
    fit_interval: int
    """Environment steps between the costlier probe_fit_loss measurements; 0 turns them off."""
    batch_size: int
    """States in the fixed probe batch drawn from replay."""
    ntk_batch: int
    """Probe-batch states in the empirical NTK (cost grows with the square); 0 skips it."""
    fit_steps: int
    """Adam steps of each probe_fit_loss fit."""
    refresh_interval: int
    """Environment steps between redraws of the probe batch."""
    dormant_tau: float
    """τ of dormant_fraction: units whose ReDo score s_i ≤ τ (with `redo` on, the fraction at
    ReDo's own interventions.redo.tau is logged too, as redo_dormant_fraction)."""


@dataclass(frozen=True)
class EvalConfig:
    interval: int
    """Environment steps between evaluation phases during training; 0 turns them off."""
    episodes: int
    """Games played per evaluation phase, at agent.eval_epsilon."""
    num_envs: int
    """Games played at once in an evaluation phase (at most `episodes`)."""


@dataclass(frozen=True)
class RedoConfig:
    enabled: bool
    """Recycle dormant units (the `redo` option)."""
    interval: int
    """Optimiser updates between ReDo recycles of the dormant units."""
    tau: float
    """Units with ReDo score <= tau are recycled."""


@dataclass(frozen=True)
class ShrinkPerturbConfig:
    enabled: bool
    """Shrink and perturb the parameters (the `shrink_perturb` option)."""
    interval: int
    """Optimiser updates between shrink-and-perturb steps."""
    shrink: float
    """lambda in theta <- lambda theta + sigma theta_fresh."""
    perturb: float
    """sigma: the weight of a new initialisation theta_fresh."""


@dataclass(frozen=True)
class ResetHeadConfig:
    enabled: bool
    """Reset the last layers periodically (the `reset_head` option)."""
    interval: int
    """Optimiser updates between resets of the last layers."""
    layers: int
    """Layers reset, counted from the output (the head, dueling or not, is one layer)."""


@dataclass(frozen=True)
class InjectConfig:
    enabled: bool
    """Inject plasticity once (the `inject` option)."""
    at: int
    """Optimiser update after which the head is frozen and a fresh one injected."""


@dataclass(frozen=True)
class InterventionConfig:
    """Mid-training changes to the network and its optimiser state (interventions/)."""

    redo: RedoConfig
    shrink_perturb: ShrinkPerturbConfig
    reset_head: ResetHeadConfig
    inject: InjectConfig


@dataclass(frozen=True)
class Config:
    variant: str
    """The options merged into this config, joined by `+` (`dqn` for the baseline)."""
    env: EnvConfig
    network: NetworkConfig
    agent: AgentConfig
    replay: ReplayConfig
    train: TrainConfig
    probes: ProbeConfig
    eval: EvalConfig
    interventions: InterventionConfig
