"""Ablation sweeps as data: one YAML file per sweep (configs/sweeps/*.yaml), validated here.

A sweep varies one dotted config key over a list of values on top of a base recipe (a config file, or the config
the DAG runs with). Each value is one run: RL training from the recipe's shared upstream (index, base model, SFT
warm start) with `--set key=value` and the sweep's fixed overrides, then, optionally, evaluation on the listed
benchmarks. The Snakemake rules in workflow/rules/sweep.smk expand a sweep into these runs.

Validation is the typed config's own: the key must name a field of the config schema, and each value (with the
fixed overrides) must build a valid, consistent config; errors name the sweep file, the key and the value.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from . import Config, ConfigError, _format_errors, _set_dotted, config_from_dict
from .base import Section
from .checks import ConfigCheckError, require_consistent
from .yaml_source import ConfigFileError, KeyLines, read_config_file

CURRENT = "current"  # `base: current`: the config the DAG runs with
NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"  # sweep and run labels: rule names and path parts
# Keys whose change would change what the runs share (the corpus, index, base model, SFT warm start, synthesized
# data) or where the outputs go: a sweep over them is not a sweep over one upstream.
UPSTREAM_KEYS = (
    "name",
    "results_dir",
    "sweeps",
    "data",
    "tiny_model",
    "synth",
    "models",
    "rl.sft",
    "rl.train_file",
    "rl.train_source",
    "retrieval.backend",
    "retrieval.dense",
    "engine.model",
)


class SweepValue(Section):
    """One run of a sweep: a value of the parameter and, optionally, its name in figures and tables."""

    value: Any = Field(..., description="The parameter's value in this run.")
    name: str | None = Field(None, description="The run's name in figures and tables (default: the value).")


class Sweep(Section):
    """A sweep file (configs/sweeps/<name>.yaml)."""

    name: str = Field(
        ..., pattern=NAME_RE, description="The sweep's name: target `sweep_<name>`, results/sweeps/<name>/."
    )
    description: str = Field("", description="What the sweep asks (shown in the report).")
    base: str = Field(
        CURRENT,
        description="The recipe the runs vary: a config file (relative to the repository root), or 'current' "
        "for the config the DAG runs with. A recipe sweep runs with that recipe: "
        "`snakemake sweep_<name> --configfile <base>`.",
    )
    parameter: str = Field(..., description="The varied dotted config key, e.g. rl.max_head_offpolicyness.")
    label: str | None = Field(None, description="Human label of the parameter (default: the key).")
    values: list[SweepValue] = Field(..., min_length=1, description="The values, one run each.")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="Dotted key -> value applied to every run (e.g. fewer RL steps)."
    )
    eval: list[str] = Field(
        default_factory=list,
        description="Benchmarks each run's trained model is evaluated on (empty: the runs only train).",
    )

    @field_validator("values", mode="before")
    @classmethod
    def _scalars_are_values(cls, v: Any) -> Any:
        """A plain entry `4` means `{value: 4}` (a mapping value must be written `{value: {...}}`)."""
        if isinstance(v, list):
            return [x if isinstance(x, dict) else {"value": x} for x in v]
        return v

    @field_validator("values")
    @classmethod
    def _distinct_runs(cls, values: list[SweepValue]) -> list[SweepValue]:
        runs = _runs_of(values)
        texts = [value_text(v.value) for v in values]
        for what, items in (
            ("value", texts),
            ("name", [r.name for r in runs]),
            ("run directory", [r.dir for r in runs]),
        ):
            dup = sorted({x for x in items if items.count(x) > 1})
            if dup:
                raise ValueError(f"two runs share the {what} {dup[0]!r}")
        return values

    @property
    def run_dirs(self) -> list[str]:
        """Each run's folder under results/sweeps/<name>/: its value as a path part (`0`, `f1`, `areal`)."""
        return [r.dir for r in self.runs()]

    @property
    def parameter_label(self) -> str:
        return self.label or self.parameter

    def runs(self) -> list[SweepRun]:
        return _runs_of(self.values)

    def run_overrides(self, run: SweepRun) -> list[tuple[str, Any]]:
        """(key, value) pairs of one run, fixed overrides first, then the varied parameter."""
        return [*self.overrides.items(), (self.parameter, run.value)]

    def run(self, run_dir: str) -> SweepRun:
        for r in self.runs():
            if r.dir == run_dir:
                return r
        raise KeyError(f"sweep {self.name!r} has no run {run_dir!r} (runs: {', '.join(self.run_dirs)})")


@dataclass(frozen=True)
class SweepRun:
    value: Any
    name: str  # the run's name in figures and tables
    dir: str  # its folder under results/sweeps/<sweep>/


def _runs_of(values: list[SweepValue]) -> list[SweepRun]:
    """The runs of a sweep's values: named by `name`, else by the value as YAML writes it; in a folder named by the
    value."""
    runs = []
    for v in values:
        text = value_text(v.value)
        runs.append(SweepRun(value=v.value, name=v.name if v.name is not None else text, dir=slug(text)))
    return runs


def value_text(v: Any) -> str:
    """A value as YAML writes it inline (`0`, `f1`, `true`, `[a, b]`)."""
    return yaml.safe_dump(v, default_flow_style=True, width=10**6).strip().removesuffix("\n...").strip()


def slug(text: str) -> str:
    """A path part: letters, digits, '_', '.', '-' kept, anything else '-'."""
    s = re.sub(r"[^A-Za-z0-9_.\-]+", "-", text).strip("-.") or "run"
    return s


def set_options(pairs: list[tuple[str, Any]]) -> str:
    """`--set key=value` options for the CLI, each shell-quoted; values are YAML, so a string that YAML would read
    as something else (`"true"`, `"4"`) is written quoted."""
    out = []
    for key, value in pairs:
        text = value_text(value)
        if isinstance(value, str) and yaml.safe_load(text) != value:
            text = json.dumps(value)
        out.append(f"--set {shlex.quote(f'{key}={text}')}")
    return " ".join(out)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The config section class inside an annotation (`Section`, `Section | None`), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is not None and get_origin(annotation) is not dict:
        found = [m for a in get_args(annotation) if (m := _model_of(a)) is not None]
        return found[0] if len(found) == 1 else None
    return None


def check_key(key: str) -> None:
    """ValueError unless `key` names a setting (a leaf or a section) of the config schema."""
    model: type[BaseModel] | None = Config
    parts = key.split(".")
    for i, part in enumerate(parts):
        if model is None:
            raise ValueError(
                f"{'.'.join(parts[:i])!r} is a setting, not a section: {key!r} is not a config key"
            )
        if part not in model.model_fields:
            known = ", ".join(sorted(model.model_fields))
            where = f"section {'.'.join(parts[:i])!r}" if i else "the config"
            raise ValueError(f"{key!r} is not a config key: {where} has no {part!r} (it has {known})")
        model = _model_of(model.model_fields[part].annotation)


def _check_not_upstream(key: str) -> None:
    for up in UPSTREAM_KEYS:
        if key == up or key.startswith(up + "."):
            raise ValueError(
                f"{key!r} changes what the runs share ({up}: corpus, index, base model, SFT warm start or outputs); "
                "a sweep varies settings downstream of them"
            )


def run_config(base_raw: dict[str, Any], pairs: list[tuple[str, Any]], source: str) -> Config:
    """The config of one run: the base's raw mapping with `pairs` set, validated and checked for consistency."""
    raw = copy.deepcopy(base_raw)
    for key, value in pairs:
        _set_dotted(raw, key, value)
    cfg = config_from_dict(raw, source=source)
    require_consistent(cfg, source=source)
    return cfg


@dataclass(frozen=True)
class LoadedSweep:
    sweep: Sweep
    path: str
    base_raw: dict[str, Any] | None  # the base recipe's mapping (None for `base: current`)

    @property
    def base_name(self) -> str | None:
        """The run name of the base recipe (None for `base: current`)."""
        if self.base_raw is None:
            return None
        return str(self.base_raw.get("name", Config.model_fields["name"].default))

    def applies_to(self, cfg: Config) -> bool:
        """Whether the DAG running `cfg` can run this sweep (its base is `cfg`'s recipe)."""
        return self.base_raw is None or self.base_name == cfg.name

    def run_config(self, base_raw: dict[str, Any], run: SweepRun) -> Config:
        """One run's config over `base_raw`; ConfigError naming the sweep file, the key and the value."""
        i = self.sweep.run_dirs.index(run.dir)
        source = f"of sweep {self.path}, values[{i}] ({self.sweep.parameter} = {value_text(run.value)})"
        try:
            return run_config(base_raw, self.sweep.run_overrides(run), source)
        except ConfigCheckError as e:
            raise ConfigError(str(e)) from None

    def validate_runs(self, base_raw: dict[str, Any]) -> list[Config]:
        """Every run's config over `base_raw`."""
        return [self.run_config(base_raw, run) for run in self.sweep.runs()]


def _sweep_error(path: str, key: str, message: str, key_lines: KeyLines | None) -> ConfigError:
    line = (key_lines or {}).get(tuple(key.split(".")[:1]))
    at = f" (line {line})" if line else ""
    return ConfigError(f"invalid sweep {path}:\n  {key}: {message}{at}")


def load_sweep(path: str | Path, root: str | Path = ".") -> LoadedSweep:
    """Read and validate a sweep file; a file base is read relative to `root` (the repository root) and every run's
    config is validated over it. ConfigError names the file and the key."""
    where = str(path)
    try:
        raw, key_lines = read_config_file(path)
    except ConfigFileError as e:
        raise ConfigError(str(e).replace("config ", "sweep ", 1)) from None
    try:
        sweep = Sweep.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(
            _format_errors(f"sweep {where}", e, key_lines).replace("invalid config ", "invalid ", 1)
        ) from None
    expected = Path(where).stem
    if sweep.name != expected:
        raise _sweep_error(
            where, "name", f"{sweep.name!r} must match the file name ({expected!r})", key_lines
        )
    for key in (sweep.parameter, *sweep.overrides):
        field = "parameter" if key == sweep.parameter else f"overrides.{key}"
        try:
            check_key(key)
            _check_not_upstream(key)
        except ValueError as e:
            raise _sweep_error(where, field, str(e), key_lines) from None
    if sweep.parameter in sweep.overrides:
        raise _sweep_error(where, f"overrides.{sweep.parameter}", "is the varied parameter itself", key_lines)
    base_raw = None
    if sweep.base != CURRENT:
        base_path = Path(root) / sweep.base
        if not base_path.is_file():
            raise _sweep_error(where, "base", f"no recipe {sweep.base!r} (looked for {base_path})", key_lines)
        try:
            base_raw, _ = read_config_file(base_path)
        except ConfigFileError as e:
            raise _sweep_error(where, "base", str(e), key_lines) from None
    loaded = LoadedSweep(sweep=sweep, path=where, base_raw=base_raw)
    if base_raw is not None:
        loaded.validate_runs(base_raw)
    return loaded


def runs_json(loaded: LoadedSweep, results_dir: str) -> dict[str, Any]:
    """The contract the report reads (results/sweeps/<name>/runs.json): each run's training folder (metrics.jsonl,
    summary.json) and the aggregate.json of each evaluated benchmark."""
    sweep = loaded.sweep
    runs = []
    for run in sweep.runs():
        run_dir = f"{results_dir}/sweeps/{sweep.name}/{run.dir}"
        runs.append(
            {
                "value": run.value,
                "name": run.name,
                "train_dir": f"{run_dir}/train",
                "eval": {b: f"{run_dir}/eval/{b}/aggregate.json" for b in sweep.eval},
            }
        )
    return {
        "sweep": sweep.name,
        "parameter": sweep.parameter,
        "label": sweep.parameter_label,
        "description": sweep.description,
        "runs": runs,
    }
