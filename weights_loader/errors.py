"""The loaders' error types: every file, key and config problem is one of these, with a message that
says what was wrong, where (file, key, field) and what to do."""


class CheckpointError(ValueError):
    """A checkpoint could not be read or does not fit the model. The message says what to do."""


class ConfigError(CheckpointError):
    """A config file (config.json, model_index.json, scheduler_config.json, tokenizer_config.json,
    vocab.json, a shard index) is not valid JSON, lacks a field, or describes another model.
    The message names the file (and the field)."""
