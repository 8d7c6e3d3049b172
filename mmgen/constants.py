"""Keys of the dataset format and of processor outputs."""

MODALITY_VALUE_KEY = "value"
NUM_EMBEDDINGS_KEY = "num_embeddings"
MODALITY_TYPE_KEY = "type"
MODALITIES_KEY = "modalities"
