"""The policy: config, model, tokenizer, training, inference, attention and uncertainty (arrives with the VLA issue)."""
