"""Run directories: the torch-free format (:mod:`agad.rundir`) and the weights (:mod:`agad.checkpoint`).

Kept so that ``from agad.runs import ...`` goes on working; new code imports
from the two modules directly (agad.rundir never imports torch).
"""

from .checkpoint import *  # noqa: F401,F403
from .checkpoint import __all__ as _checkpoint_all
from .rundir import *  # noqa: F401,F403
from .rundir import __all__ as _rundir_all

__all__ = [*_rundir_all, *_checkpoint_all]
