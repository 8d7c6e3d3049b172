"""The YAML modality spec that ``mmgen new-modality`` generates code from.

schema.py    the pydantic schema (unknown keys are errors with a suggestion)
loading.py   a spec file -> a checked ``ModalitySpec``, every problem as ``file:line``
formula.py   the safe arithmetic language of ``num_embeddings`` (whitelisted, never executed)
"""
