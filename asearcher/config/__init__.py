"""Typed run configuration, loaded from the same YAML that the Snakefile validates.

`configs/default.yaml` is the CPU default; `configs/paper/*.yaml` hold paper-scale recipes. The JSON schema in
`workflow/schemas/config.schema.json` is generated from these models (`asearcher config schema`), so the
Snakefile and the library can never disagree on what a key means.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from asearcher.errors import UserFacingError

from .agent import AgentConfig
from .base import Section
from .data import DataConfig
from .eval import EvalConfig, JudgeConfig
from .llm import EngineConfig, TinyModelConfig
from .report import ReportConfig
from .retrieval import DenseConfig, RetrievalConfig, ServerConfig
from .rl import OptimConfig, RLConfig, SFTConfig
from .synth import SynthConfig
from .tools import ToolsConfig, WebConfig

__all__ = [
    "AgentConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "DenseConfig",
    "EngineConfig",
    "EvalConfig",
    "JudgeConfig",
    "OptimConfig",
    "RLConfig",
    "ReportConfig",
    "RetrievalConfig",
    "SFTConfig",
    "ServerConfig",
    "SynthConfig",
    "TinyModelConfig",
    "ToolsConfig",
    "WebConfig",
    "load_config",
    "json_schema",
]


class ClusterConfig(Section):
    """GPU resources of a recipe (read by the Snakemake rules; the CPU default uses none)."""

    gpus_per_node: int = Field(8, ge=1, description="GPUs per node of the cluster.")
    train_nodes: int = Field(1, ge=1, description="Nodes of the multi-node Ray training job.")
    train_runtime_min: int = Field(60, ge=1, description="Wall-clock limit of the training job (minutes).")
    eval_gpus: int = Field(
        0,
        ge=0,
        description="GPUs of an evaluation job whose model runs in-process (transformers engine; 0 = CPU). "
        "A vLLM model's job asks for its tensor_parallel_size GPUs, an OpenAI-compatible endpoint's for none.",
    )
    eval_runtime_min: int = Field(60, ge=1, description="Wall-clock limit of an evaluation job (minutes).")
    synth_runtime_min: int = Field(
        1440, ge=1, description="Wall-clock limit of the synth job (minutes); a rerun resumes it."
    )
    index_gpus: int = Field(0, ge=0, description="GPUs for building a dense (E5) index; 0 = CPU.")


class Config(Section):
    """The whole run: one YAML file, every stage."""

    name: str = Field("default", description="Run name; outputs go under results/<name>/.")
    description: str = Field("", description="Free text: what this config is for and how it deviates.")
    results_dir: str = Field("results", description="Root of every output.")
    seed: int = Field(1, description="Base seed of the run.")
    data: DataConfig = Field(default_factory=DataConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    tiny_model: TinyModelConfig = Field(default_factory=TinyModelConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    synth: SynthConfig = Field(default_factory=SynthConfig)
    rl: RLConfig = Field(default_factory=RLConfig)
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    models: dict[str, EngineConfig] = Field(
        default_factory=dict,
        description="Named models for evaluation (name -> engine settings); the eval DAG runs model x benchmark.",
    )
    sweeps: list[str] = Field(
        default_factory=list,
        description="Sweep files (configs/sweeps/*.yaml, see docs/sweeps.md) whose runs are targets of this run's "
        "`all` rule; every sweep file also has its own target, `snakemake sweep_<name>`.",
    )

    @model_validator(mode="after")
    def _expand_placeholders(self) -> Config:
        """Model paths may say `{results_dir}` and `{run_dir}` so recipes follow a results_dir override."""
        subs = {
            "results_dir": self.results_dir,
            "run_dir": f"{self.results_dir}/{self.name}",
            "name": self.name,
        }

        def expand(s: str) -> str:
            for k, v in subs.items():
                s = s.replace("{" + k + "}", v)
            return s

        roles = [e for e in (self.synth.reasoner, self.synth.instruct) if e is not None]
        for eng in [self.engine, *self.models.values(), *roles]:
            if "{" in eng.model:
                object.__setattr__(eng, "model", expand(eng.model))
        return self

    @model_validator(mode="after")
    def _resolve_retrieval_switch(self) -> Config:
        """retrieval.enabled: null (the default) follows tools.backend (on for 'local', and for 'web' searching
        the retrieval server's local web); the merged config says true/false."""
        if self.retrieval.enabled is None:
            tools = self.tools
            needs = tools.backend == "local" or tools.web.search_url == "local"
            object.__setattr__(self.retrieval, "enabled", needs)
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.results_dir) / self.name

    def mirror_dir(self) -> Path | None:
        """The local release mirror: data.mirror, else $ASEARCHER_MIRROR, else None."""
        m = self.data.mirror or os.environ.get("ASEARCHER_MIRROR")
        return Path(m) if m else None

    def dump(self, path: str | Path) -> None:
        """Write the merged, fully-defaulted config (next to a run's outputs)."""
        from asearcher.utils.atomic import atomic_write_text

        atomic_write_text(path, yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False))


class ConfigError(UserFacingError, ValueError):
    """A config that does not validate; the message names the file and every offending key."""


def _format_errors(source: str, err: ValidationError, key_lines: dict | None = None) -> str:
    lines = [f"invalid config {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        key = key if key.isprintable() else repr(key)  # a key with a newline must not break the message
        at = ""
        if key_lines:  # the line of the key, or of its closest enclosing key that the file has
            loc = tuple(str(p) for p in e["loc"])
            found = next((key_lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in key_lines), None)
            at = f" (line {found})" if found else ""
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key{at}")
        else:
            got = repr(e.get("input"))
            got = got if len(got) <= 200 else got[:200] + "..."
            lines.append(f"  {key}: {e['msg']} (got {got}){at}")
    return "\n".join(lines)


def _set_dotted(d: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur = d
    for p in parts[:-1]:
        nxt = cur.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {dotted!r}: {p!r} is not a section")
        cur = nxt
    cur[parts[-1]] = value


def parse_overrides(overrides: list[str] | None) -> list[tuple[str, Any]]:
    """Parse `a.b=value` strings; values are read as YAML scalars (so `3`, `true`, `null`, `[a, b]` work)."""
    out = []
    for o in overrides or []:
        if "=" not in o:
            raise ConfigError(f"override {o!r} is not of the form key=value")
        k, v = o.split("=", 1)
        k = k.strip()
        if not all(part.strip() for part in k.split(".")):
            raise ConfigError(f"override {o!r}: the key {k!r} has an empty part (expected e.g. eval.k=2)")
        from .yaml_source import ConfigFileError, load_yaml

        try:
            value, _ = load_yaml(v, f"override {o!r}: the value")
        except ConfigFileError as e:
            raise ConfigError(str(e)) from None
        out.append((k, value))
    return out


def config_from_dict(
    raw: dict[str, Any] | None, source: str = "<dict>", key_lines: dict | None = None
) -> Config:
    try:
        return Config.model_validate(raw or {})
    except ValidationError as e:
        raise ConfigError(_format_errors(source, e, key_lines)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or the defaults when path is None) and apply `key=value` overrides."""
    raw: dict[str, Any] = {}
    source = "<defaults>"
    key_lines = None
    if path is not None:
        from .yaml_source import ConfigFileError, read_config_file

        source = str(path)
        try:
            raw, key_lines = read_config_file(path)
        except ConfigFileError as e:
            raise ConfigError(str(e)) from None
    for k, v in parse_overrides(overrides):
        _set_dotted(raw, k, v)
    return config_from_dict(raw, source, key_lines)


def json_schema() -> dict[str, Any]:
    """JSON schema of the config (what workflow/schemas/config.schema.json holds)."""
    schema = Config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "asearcher-repro run configuration"
    return schema


def write_schema(path: str | Path) -> None:
    Path(path).write_text(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n")
