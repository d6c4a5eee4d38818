"""The one exception meant for the person at the keyboard."""

from __future__ import annotations


class UserError(Exception):
    """Bad input (a flag, a config key or value, a file): the command line prints the message alone,
    without a traceback, and exits non-zero."""
