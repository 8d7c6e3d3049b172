"""Exporting a trained model: ``mmgen export RUN OUT`` (``merged``: the mmgen folder with LoRA
merged, and its model card) and ``--format llava`` (a plain transformers LLaVA folder beside)."""
