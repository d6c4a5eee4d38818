"""The one object that writes a run's TensorBoard events (nothing else below train.py does), and
forwards them to a W&B mirror when the run is tracked (training.tracking)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

import configs
from configs import Config

if TYPE_CHECKING:
    from training.tracking import WandbMirror


def run_hparams(config: Config) -> dict[str, object]:
    """The options a run is filtered and compared by (TensorBoard's hparams, W&B's config)."""
    a, n = config.agent, config.network
    return {
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


class TensorBoardLogger:
    """The one object below train.py's main that writes TensorBoard events.

    Args:
        purge_step: a resumed run's checkpoint step. Events logged after it by the runs that went
            on past it are purged when read back; those at that step itself were flushed before
            the checkpoint was written and the resumed run never logs that step again, so they
            are kept (SummaryWriter's own purge_step drops that step too).
        mirror: a tracked run's W&B run, which gets every scalar too (same tag, same step).
    """

    def __init__(
        self, run_dir: Path, *, purge_step: int | None = None, mirror: WandbMirror | None = None
    ) -> None:
        purge = None if purge_step is None else purge_step + 1
        self.writer = SummaryWriter(str(run_dir), purge_step=purge)
        self.mirror = mirror

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, value, step)
        if self.mirror is not None:
            self.mirror.scalar(tag, value, step)

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.scalar(f"{prefix}{key}", value, step)

    def config(self, config: Config) -> None:
        """The resolved options as text and as hparams, so runs can be filtered and compared."""
        text = yaml.safe_dump(configs.to_dict(config), sort_keys=False)
        self.writer.add_text("config", "    " + text.replace("\n", "\n    "), 0)
        for summary in hparams(run_hparams(config), {"charts/episodic_return": float("nan")}):
            self.writer.file_writer.add_summary(summary)

    def flush(self) -> None:
        self.writer.flush()
        if self.mirror is not None:
            self.mirror.commit()

    def close(self, *, failed: bool = False) -> None:
        """Close the events, and end the W&B run (marked failed after a divergence or crash)."""
        try:
            self.writer.close()
        finally:
            if self.mirror is not None:
                self.mirror.finish(failed=failed)
