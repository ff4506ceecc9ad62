"""Fine-tuning a bi-encoder: pairs → model directory (see ``model_dir.py`` for what that holds)."""
