"""Sweeps: a grid of ordinary train.py runs (game x variant x seed), each in a run directory named
by `game__variant__sSEED`, run by a local process pool or as Ray tasks, resumable by rerunning."""
