"""Test helpers shared across test modules (import as ``from helpers.<module> import ...``)."""
