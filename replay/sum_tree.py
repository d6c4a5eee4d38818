"""A sum tree for proportional prioritized sampling (Schaul et al. 2016, Appendix B.2.1).

Every internal node holds the sum of its children, so the root holds the total priority and a
value u in [0, total) leads from the root to the leaf whose cumulative range holds it: leaf i is
reached with probability p_i / Σ_j p_j. The tree is K-ary (`fanout`, 32 by default) and stored one
flat array per level; a batch is updated and sampled level by level with whole-array numpy
operations, so a million leaves take 4 levels and no Python loop runs per sample.
"""

from __future__ import annotations

import numpy as np


class SumTree:
    """Sums of non-negative leaf values over a K-ary tree.

    Args:
        size: number of leaves (replay slots); the last level is padded with zeros to K^depth.
        fanout: children per node, K.
    """

    def __init__(self, size: int, *, fanout: int = 32) -> None:
        if size < 1 or fanout < 2:
            raise ValueError(f"size={size} must be >= 1 and fanout={fanout} >= 2")
        self.size, self.fanout = int(size), int(fanout)
        depth = 1
        while fanout**depth < size:
            depth += 1
        # levels[0] is the root; levels[-1] holds the leaves.
        self.levels = [np.zeros(fanout**d, dtype=np.float64) for d in range(depth + 1)]
        self._left_of = np.triu(np.ones((fanout, fanout)), 1)  # [j, i] = 1 when j < i

    @property
    def leaves(self) -> np.ndarray:
        """The leaf values (a view of the last level, padding excluded)."""
        return self.levels[-1][: self.size]

    def total(self) -> float:
        """Σ_i p_i, the root."""
        return float(self.levels[0][0])

    def get(self, index: np.ndarray) -> np.ndarray:
        return self.levels[-1][index]

    def set(self, index: np.ndarray, values: np.ndarray) -> None:
        """p[index] = values, then each ancestor recomputed from its children, level by level (so
        no rounding error accumulates). A repeated index keeps one of its values."""
        index = np.asarray(index, dtype=np.int64)
        self.levels[-1][index] = values
        for child, parent in zip(self.levels[:0:-1], self.levels[-2::-1], strict=True):
            index = index // self.fanout
            parent[index] = child.reshape(-1, self.fanout)[index].sum(1)

    def rebuild(self) -> None:
        """Every internal node from the leaves (after the leaves were written directly)."""
        for child, parent in zip(self.levels[:0:-1], self.levels[-2::-1], strict=True):
            parent[:] = child.reshape(-1, self.fanout).sum(1)

    def find(self, mass: np.ndarray) -> np.ndarray:
        """The leaf whose cumulative range [Σ_{j<i} p_j, Σ_{j≤i} p_j) holds each value of `mass`.

        Args:
            mass: values in [0, total).

        Returns:
            Leaf indices; a value at or past the total (rounding) may reach a zero-valued leaf,
            which callers reject.
        """
        mass = np.array(mass, dtype=np.float64)
        node = np.zeros(mass.shape, dtype=np.int64)
        rows = np.arange(mass.size)
        for level in self.levels[1:]:
            # Mass left of each child, as one small matmul (cheaper than cumsum on short rows).
            before = level.reshape(-1, self.fanout)[node] @ self._left_of  # [B, K]
            child = (before <= mass[:, None]).sum(1) - 1  # the last child starting at or below
            mass -= before[rows, child]
            node = node * self.fanout + child
        return node

    def sample(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """`batch_size` leaves drawn independently with probability p_i / Σ_j p_j."""
        return self.find(rng.random(batch_size) * self.total())
