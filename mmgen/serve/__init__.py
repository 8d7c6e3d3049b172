"""``mmgen serve``: an OpenAI-compatible HTTP server for a trained model (FastAPI + uvicorn),
batching concurrent requests together. ``app.create_app`` builds it; ``batcher`` runs the
batches; ``requests`` turns a chat request into a prompt, reading media only where allowed."""
