"""The import path tests written before the ``testkit.discord`` package still use."""

from .discord import *  # noqa: F403
from .discord import __all__  # noqa: F401
