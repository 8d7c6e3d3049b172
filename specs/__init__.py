"""Built-in modality specs (package data)."""
