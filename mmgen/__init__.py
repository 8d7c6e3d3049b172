"""mmgen: add a modality to an LLM from a YAML spec, and train it on packed batches.

``import mmgen`` stays cheap: the public classes below are resolved on first use, so torch and
transformers are imported only by code that needs them (``mmgen --help`` never does).
"""

from mmgen.constants import (
    MODALITIES_KEY,
    MODALITY_TYPE_KEY,
    MODALITY_VALUE_KEY,
    NUM_EMBEDDINGS_KEY,
)
from mmgen.lazy import lazy_names

__version__ = "0.1.0"

# public name -> module that defines it (imported lazily, see __getattr__)
_LAZY = {
    "BaseModalityLoader": "mmgen.modality.base",
    "BaseModalityConfig": "mmgen.modality.base",
    "BaseModalityProcessor": "mmgen.modality.base",
    "BaseModality": "mmgen.modality.base",
    "AutoModalityLoader": "mmgen.modality.registry",
    "AutoModality": "mmgen.modality.registry",
    "LinearProjector": "mmgen.nn.projectors",
    "MLPProjector": "mmgen.nn.projectors",
    "MultimodalConfig": "mmgen.model",
    "MultimodalModel": "mmgen.model",
    "MultimodalProcessor": "mmgen.data.processor",
    "load": "mmgen.infer.load",
    "GenerationOptions": "mmgen.model.generation",
}

__all__ = [
    "MODALITIES_KEY",
    "MODALITY_TYPE_KEY",
    "MODALITY_VALUE_KEY",
    "NUM_EMBEDDINGS_KEY",
    "__version__",
    *_LAZY,
]


__getattr__, __dir__ = lazy_names(__name__, _LAZY)
