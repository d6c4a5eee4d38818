"""Replay memory: frames stored once, frame stacks and n-step returns rebuilt at sample time."""

from replay.buffer import Batch, ReplayBuffer

__all__ = ["Batch", "ReplayBuffer"]
