"""The `[report]` extra: a missing package is one clear error that names the extra."""

from __future__ import annotations

import importlib

from configs.errors import UserError

INSTALL = 'pip install -e ".[report]"'
REPORT_MODULES = ("rliable", "matplotlib", "imageio", "imageio_ffmpeg")
VIDEO_MODULES = ("imageio", "imageio_ffmpeg")


def require(modules: tuple[str, ...] = REPORT_MODULES, *, purpose: str = "report.py") -> None:
    """Import each of `modules`; a UserError naming the extra if one (or its own dependency, such
    as rliable's arch or scipy) cannot be imported."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as error:
            missing = error.name or name
            raise UserError(
                f"{purpose} needs the optional [report] extra ({missing} is not installed): "
                f"{INSTALL}"
            ) from None
