"""Dark-current subtraction."""

from romanimpreprocess.dark_current.dark_current_step import DarkCurrentStep

__all__ = ["DarkCurrentStep"]
