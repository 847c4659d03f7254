"""Dark-decay subtraction."""

from romanimpreprocess.dark_decay.dark_decay_step import DarkDecayStep

__all__ = ["DarkDecayStep"]
