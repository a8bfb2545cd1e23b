"""minidit's own error types. Every refusal says what was wrong, where (the file, the key, the
argument) and what to do, and comes before any compute is spent on the request.

    InputError         an argument of a pipeline call, a sampler or the command line is refused
                       (a ValueError and a TypeError: `except ValueError` and `except TypeError` both
                       catch it, so a wrong type and a wrong value are one kind of mistake to the caller)
    NonFiniteError     a stage (text encoding, a denoising step, the VAE decode) produced NaN or inf;
                       the message names the stage, the dtype and what to try (a FloatingPointError)

The file-side errors live with the code that reads files (`weights_loader`):

    weights_loader.CheckpointError     a weight file could not be read or does not fit the model (ValueError)
      weights_loader.ConfigError       a config file (config.json, model_index.json, scheduler_config.json,
                                       tokenizer_config.json, vocab.json, a shard index) is not valid JSON,
                                       lacks a field, or describes another model
      weights_loader.MissingPartError  a pipeline folder lacks a component (also a FileNotFoundError)

`python -m minidit` prints any of them as `error: ...` with exit status 2 (`--debug` shows the traceback).
"""
from __future__ import annotations


class InputError(ValueError, TypeError):
    """An argument was refused: the message names the argument, the value given and what to pass."""


class NonFiniteError(FloatingPointError):
    """A stage produced NaN or inf: the message names the stage, the dtype and what to try."""
