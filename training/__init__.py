"""Fine-tuning a sentence bi-encoder: data readers, encoder, InfoNCE loss, training loop, evaluation."""
