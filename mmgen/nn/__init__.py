"""Building blocks the generated modalities import.

encoders.py         load a transformers encoder (or its submodule), pick its hidden state
signal_encoders.py  built-in encoders for signals without a pretrained model (conv1d, mlp)
timm_encoders.py    timm image models as encoders (kind: timm): layer, pooling, local weights
downsample.py       token downsampling (average or concatenate neighbours)
projectors.py       LinearProjector, MLPProjector into the LLM's hidden size
preprocess.py       numeric preprocessing: resample, normalize, crop/pad
"""
