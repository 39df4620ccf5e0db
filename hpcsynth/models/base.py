"""Compatibility name: `Generator` here is `hpcsynth.models.protocol.GradientGenerator` (import it from there)."""
from hpcsynth.models.protocol import GradientGenerator as Generator

__all__ = ["Generator"]
