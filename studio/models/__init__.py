"""Models: the Shallow-UViT, its core, and the grown UViT (diffusers ModelMixin + ConfigMixin)."""

from studio.models.core import Core
from studio.models.presets import CORE_PRESETS, GROWN_PRESETS, core_preset, grown_preset
from studio.models.uvit import MODEL_CLASSES, UNTRAINED, GrownUViT, ShallowUViT

__all__ = ["Core", "ShallowUViT", "GrownUViT", "MODEL_CLASSES", "UNTRAINED", "CORE_PRESETS", "GROWN_PRESETS",
           "core_preset", "grown_preset"]
