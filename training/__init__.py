"""The training loop's collaborators: one seed's run (`SeedRun`), the launch from flags to runs
(`launch`), and the TensorBoard logger. train.py holds the loop over the seeds of a process."""

from training.logger import TensorBoardLogger
from training.seed_run import SeedRun

__all__ = ["SeedRun", "TensorBoardLogger"]
