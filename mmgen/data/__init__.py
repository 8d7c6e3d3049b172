"""The data side: reading datasets, the multimodal processor, packing and collating."""
