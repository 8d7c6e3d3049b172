"""Offline stand-ins for tests, the generated tests included: tiny random-init encoders and
processors saved to disk (``models.py``) and synthetic dataset values (``samples.py``)."""

from mmgen.testing.models import save_tiny_model, save_tiny_processor
from mmgen.testing.samples import synthetic_value

__all__ = ["save_tiny_model", "save_tiny_processor", "synthetic_value"]
