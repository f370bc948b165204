"""Keys and file names of vla_core that storage.features does not have (batch keys live there: OBS_STATE, ACTION,
TASK, image_key, grounding_key). Import these; never write the literals elsewhere."""

ACTION_IS_PAD = "action_is_pad"  # bool (B, T): True where the chunk step lies past the episode end

# Files of a saved policy folder next to config.json / model.safetensors / the tokenizer files.
CONFIG_FILE = "config.json"  # written by save_pretrained; its `model_type` is the registered policy name
TRAINING_METADATA_FILE = "training_metadata.json"  # written by the trainer (dataset, steps, metrics, calibration)
NORMALIZATION_FILE = "normalization.json"  # human-readable copy of the stats (the buffers in model.safetensors rule)
# What vla_core.train writes beside the model (torch-free here, so the web process can name them without torch).
METRICS_FILE = "metrics.jsonl"  # one JSON line per log interval (the training curves)
CHECKPOINTS_DIR = "checkpoints"  # periodic checkpoints: step_XXXXXX/, each a saved policy + STATE_FILE
STATE_FILE = "training_state.pt"  # optimizer, RNG and step of a checkpoint (resuming, not inference)

