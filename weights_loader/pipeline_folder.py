"""Finding the parts of a diffusers pipeline download: model_index.json, component folders, scheduler config.

A pipeline download (`huggingface-cli download PixArt-alpha/PixArt-Sigma-XL-2-1024-MS --local-dir DIR`)
is a root folder holding `model_index.json` (its `_class_name` is the pipeline class) and one folder
per component: `transformer/`, `vae/`, `text_encoder/`, `tokenizer/`, `scheduler/`, ... A partial
download (e.g. only `transformer/`) is completed by a second root, `base`, that supplies the
components it lacks; every lookup tries the roots in order, the download first.

    parts = PipelineFolder(folder, base, hint="huggingface-cli download ... (what to fetch)")
    name = parts.pipeline_class(("PixArtAlphaPipeline", "PixArtSigmaPipeline"))   # model_index.json
    transformer = load_pixart(parts.component("transformer"), overrides={"model_max_length": 300})
    scheduler = parts.scheduler_config()     # the dict, or None when no root has one

A component folder counts as present when it holds its marker file: `config.json`, for tokenizers
`tokenizer_config.json`, for the scheduler `scheduler_config.json`.
"""
from __future__ import annotations

from pathlib import Path

from .configs import read_json_file
from .errors import CheckpointError


class MissingPartError(CheckpointError, FileNotFoundError):
    """A pipeline folder lacks model_index.json or a component (a CheckpointError and a FileNotFoundError)."""


def marker_file(component: str) -> str:
    """The file whose presence marks `component/` as downloaded."""
    if component.startswith("tokenizer"):
        return "tokenizer_config.json"
    if component == "scheduler":
        return "scheduler_config.json"
    return "config.json"


class PipelineFolder:
    """The roots of one diffusers pipeline: `folder`, then `base` (optional) for what `folder` lacks.
    `hint` (what to download, and from where) ends every "not found" error."""

    def __init__(self, folder, base=None, *, hint: str = ""):
        self.roots = tuple(Path(r) for r in (folder, base) if r is not None)
        self.hint = hint

    def find(self, relative_path: str) -> Path | None:
        """The first root's `relative_path` that is a file, else None."""
        return next((r / relative_path for r in self.roots if (r / relative_path).is_file()), None)

    def _missing(self, what: str) -> MissingPartError:
        searched = " and ".join(map(str, self.roots))
        return MissingPartError(f"no {what} in {searched}. {self.hint}".strip())

    def model_index(self) -> dict:
        """The pipeline's model_index.json (the first root that has one)."""
        path = self.find("model_index.json")
        if path is None:
            raise self._missing("model_index.json (not a diffusers pipeline folder)")
        return read_json_file(path)

    def pipeline_class(self, expected: tuple[str, ...] | None = None) -> str:
        """`_class_name` from model_index.json; with `expected`, one of those or an error."""
        name = self.model_index().get("_class_name")
        if expected is not None and name not in expected:
            raise CheckpointError(f"{self.find('model_index.json')} names a {name}, not one of {', '.join(expected)}")
        return name

    def has(self, component: str) -> bool:
        """Whether some root holds `component/` with its marker file."""
        return self.find(f"{component}/{marker_file(component)}") is not None

    def component(self, component: str) -> Path:
        """The folder `component/` (e.g. "transformer", "vae", "text_encoder_2", "tokenizer") of the
        first root that has it with its marker file; else an error naming the roots searched."""
        path = self.find(f"{component}/{marker_file(component)}")
        if path is None:
            raise self._missing(f"{component}/{marker_file(component)}")
        return path.parent

    def require(self, *components: str) -> None:
        """Raise one error listing every one of `components` that no root has."""
        missing = [f"{c}/{marker_file(c)}" for c in components if not self.has(c)]
        if missing:
            raise self._missing(", ".join(missing))

    def scheduler_config(self) -> dict | None:
        """scheduler/scheduler_config.json as a dict, or None when no root has it."""
        path = self.find("scheduler/scheduler_config.json")
        return None if path is None else read_json_file(path)
