"""Keys of the dataset format and of processor outputs; names of saved files."""

MODALITY_VALUE_KEY = "value"
NUM_EMBEDDINGS_KEY = "num_embeddings"
MODALITY_TYPE_KEY = "type"
MODALITIES_KEY = "modalities"

# the label that takes no loss (torch's cross_entropy and HF losses skip it): prompt turns,
# placeholders, padding, and the first token of every packed sample
IGNORE_INDEX = -100

# Placeholder ids live outside every vocabulary (the fused merge never looks them up in the
# embedding table, so no resize is needed): the k-th modality of a model, in config order,
# uses PLACEHOLDER_ID_BASE - k unless the config says otherwise.
PLACEHOLDER_ID_BASE = -1000


def default_placeholder_id(index: int) -> int:
    return PLACEHOLDER_ID_BASE - index


def default_placeholder_token(name: str) -> str:
    return f"<{name}>"


# a saved modality (mmgen/modality/saving.py): its weights file, and the note in each of its
# asset folders (the encoder/processor files its config names, copied) that marks such a folder
WEIGHTS_NAME = "model.safetensors"
ASSET_MARKER = "mmgen_asset.json"
