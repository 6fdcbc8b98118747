"""Typed specifications, validated once at the edge: one trial (:class:`TrialConfig`) and, in
:mod:`segcore.config.sweep`, a whole sweep. Errors name the field, the bad value and what is valid.
"""

from .trial import TrialConfig, format_validation_error

__all__ = ["TrialConfig", "format_validation_error"]
