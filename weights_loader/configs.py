"""Config files: reading JSON (`read_json_file`: a `ConfigError` naming the file for invalid JSON or a
missing field), translating a diffusers/transformers config into a minidit config (`translate_config`),
checking diffusers' `_class_name`, and finding a component's folder inside a pipeline root."""
from __future__ import annotations

import dataclasses
import json
import numbers
from pathlib import Path
from typing import Mapping

from .errors import CheckpointError, ConfigError


class ConfigDict(dict):
    """A JSON object read from `path`: `cfg["field"]` for a field it lacks raises a ConfigError naming
    the file and the field (not a bare KeyError); `.get` works as for any dict."""

    def __init__(self, data: dict, path):
        super().__init__(data)
        self.path = Path(path)

    def __missing__(self, key):
        raise ConfigError(f"{self.path} has no {key!r} field, which minidit needs to build the model: is it the "
                          "component's own config file, complete and from the same download?")


def read_json_file(path) -> ConfigDict:
    """The JSON object in `path` (a ConfigDict); a ConfigError naming the file if it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}): an incomplete "
                          "download or a hand edit gone wrong; download the file again") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a UTF-8 text file, so not a JSON config: download it again") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} holds a JSON {type(data).__name__}, not an object {{...}}: not a config file")
    return ConfigDict(data, path)


def translate_config(translate, cfg: ConfigDict, *args):
    """`translate(cfg, *args)` (a `*_config_from_diffusers` function), its errors naming the file: a
    refusal of the translator gets the path in front, a field of the wrong type or value (a string
    where a number belongs, 0 heads, ...) becomes a ConfigError too."""
    path = getattr(cfg, "path", "config.json")
    try:
        config = translate(cfg, *args)
    except ConfigError:
        raise
    except CheckpointError as e:
        raise ConfigError(f"{path}: {e}") from None
    except (TypeError, ValueError, ArithmeticError, AttributeError) as e:
        raise ConfigError(f"{path} has a field of the wrong type or value ({type(e).__name__}: {e}); compare it "
                          "with the config of the released model") from None
    for field in dataclasses.fields(config):     # a number where a number belongs (a string slips through maths)
        default, value = field.default, getattr(config, field.name)
        wanted = (bool if isinstance(default, bool) else int if isinstance(default, int) else
                  float if isinstance(default, float) else None)
        optional = value is None and "None" in str(field.type)             # e.g. projection_dim: int | None
        ok = (wanted is None or optional or (isinstance(value, bool) if wanted is bool else
                                             isinstance(value, numbers.Real) and not isinstance(value, bool)
                                             and (wanted is float or float(value).is_integer())))
        if not ok:
            raise ConfigError(f"{path} has a field of the wrong type or value: it gives {type(config).__name__}."
                              f"{field.name} = {value!r:.40} (not {'an' if wanted is int else 'a'} {wanted.__name__}); "
                              "compare it with the config of the released model")
    return config


def check_class_name(cfg: ConfigDict, expected: tuple[str, ...], what: str, hint: str = "") -> None:
    """Refuse a config whose `_class_name` (diffusers' model class) is none of `expected`; absent is fine."""
    name = cfg.get("_class_name")
    if name is not None and name not in expected:
        raise ConfigError(f"{getattr(cfg, 'path', 'config.json')} describes a model of class {name}, not {what} "
                          f"({' or '.join(expected)}). {hint}".strip())


def read_config(folder) -> dict:
    """The `config.json` that `save_pretrained` wrote into `folder`."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{folder} has no config.json; pass config= explicitly or point at a "
                              "diffusers/transformers component folder")
    return read_json_file(path)


def component_folder(source, component: str) -> Path | None:
    """If `source` is a pipeline root (it has `model_index.json` and `component/`), return that
    component's folder; if `source` is itself a folder with `config.json`, return it; else None."""
    if isinstance(source, Mapping):
        return None
    path = Path(source)
    if not path.is_dir():
        return None
    if (path / component / "config.json").is_file():
        return path / component
    if (path / "config.json").is_file():
        return path
    return None
