"""Using a trained model: loading a run (``mmgen.load``), predicting and scoring a dataset,
chatting."""
