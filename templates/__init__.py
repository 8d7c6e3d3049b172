"""Jinja2 templates for generated modality files and the project scaffold (package data)."""
