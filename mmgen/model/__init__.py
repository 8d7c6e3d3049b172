"""The multimodal model: ``MultimodalConfig`` and ``MultimodalModel``.

attention.py      exact packed attention (varlen kwargs, block-diagonal mask, mmgen_varlen_sdpa)
config.py         MultimodalConfig (LLM + named modality configs + placeholders)
merge.py          modality encoders in chunks, num_embeddings checks, packed_merge
modeling.py       MultimodalModel: forward (packed / padded), generate, build_processor
trainable.py      training stages (set_trainable) and LoRA through peft
serialization.py  save_pretrained / from_pretrained of the whole model
"""

from transformers import AutoConfig, AutoModel

from mmgen.model import attention
from mmgen.model.config import MultimodalConfig
from mmgen.model.modeling import MultimodalModel

attention.register()  # attn_implementation="mmgen_varlen_sdpa": packed attention per sample
AutoConfig.register(MultimodalConfig.model_type, MultimodalConfig, exist_ok=True)
AutoModel.register(MultimodalConfig, MultimodalModel, exist_ok=True)

__all__ = ["MultimodalConfig", "MultimodalModel"]
