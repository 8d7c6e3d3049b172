"""The four-class modality recipe (MultiMeditron's public names, importable from ``mmgen``).

base.py       BaseModalityLoader, BaseModalityConfig, BaseModalityProcessor, BaseModality
registry.py   AutoModalityLoader, AutoModality: names -> classes (and transformers' Auto classes)
saving.py     a modality saved whole (weights + the encoder/processor files its config names)
              and loaded back from its config
adapters.py   LoRA adapters on a modality's encoder (peft), saved beside its weights
"""
