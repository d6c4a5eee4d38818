"""The one object that writes a run's TensorBoard events (nothing else below train.py does)."""

from __future__ import annotations

from pathlib import Path

import yaml
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

import configs
from configs import Config


class TensorBoardLogger:
    """The one object below train.py's main that writes TensorBoard events.

    Args:
        purge_step: a resumed run's checkpoint step. Events logged after it by the runs that went
            on past it are purged when read back; those at that step itself were flushed before
            the checkpoint was written and the resumed run never logs that step again, so they
            are kept (SummaryWriter's own purge_step drops that step too).
    """

    def __init__(self, run_dir: Path, *, purge_step: int | None = None) -> None:
        purge = None if purge_step is None else purge_step + 1
        self.writer = SummaryWriter(str(run_dir), purge_step=purge)

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, value, step)

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(f"{prefix}{key}", value, step)

    def config(self, config: Config) -> None:
        """The resolved options as text and as hparams, so runs can be filtered and compared."""
        text = yaml.safe_dump(configs.to_dict(config), sort_keys=False)
        self.writer.add_text("config", "    " + text.replace("\n", "\n    "), 0)
        a, n = config.agent, config.network
        params = {
            "variant": config.variant,
            "env": config.env.id,
            "seed": config.train.seed,
            "loss": a.loss,
            "layer_norm": n.layer_norm,
            "weight_decay": a.weight_decay,
            "l2": a.l2,
            "n_step": a.n_step,
            "double": a.double,
            "clip_rewards": config.env.clip_rewards,
            "value_transform": a.value_transform,
        }
        for summary in hparams(params, {"charts/episodic_return": float("nan")}):
            self.writer.file_writer.add_summary(summary)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
