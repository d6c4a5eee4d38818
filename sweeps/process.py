"""Starting one run as a child process that outlives no launcher: it gets its own session (a
terminal's Ctrl-C reaches the launcher alone, which forwards it once) and, on Linux, SIGTERM when
the launcher dies, even by kill -9, so that it checkpoints and exits (train.py's own handler)."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal the calling process gets when its parent thread dies."""


def die_with_parent(parent: int) -> None:
    """Ask Linux for SIGTERM when `parent` dies; exit at once if it already has (the race between
    fork and prctl). Runs in the child between fork and exec."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def spawn(argv: list[str], log: IO[bytes], *, keep_fds: tuple[int, ...] = ()) -> subprocess.Popen:
    """Start `argv` with stdout and stderr to `log`, in a new session, dying with this process.

    The launcher must call this from the thread that lives as long as the child should: Linux
    sends the death signal when the *thread* that forked the child exits."""
    parent = os.getpid()
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=lambda: die_with_parent(parent),
        pass_fds=keep_fds,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def tail(path: Path, lines: int = 15) -> str:
    """The last `lines` lines of a log file ('' if it cannot be read)."""
    try:
        text = path.read_bytes()[-16384:].decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
