"""Synthetic tasks generated locally in seconds: the shapes world (instruct and preference data) and the detail world."""

from vistune.data_prep.synth.detail import synthesize_detail
from vistune.data_prep.synth.shapes import synthesize, synthesize_preferences

__all__ = ["synthesize", "synthesize_detail", "synthesize_preferences"]
