"""The import path tests written before the ``testkit.openai`` package still use."""

from .openai import *  # noqa: F403
from .openai import __all__  # noqa: F401
