"""The benchmark registry: one small YAML per benchmark in asearcher/eval/benchmarks/.

A benchmark is found by its name, an alias or its release folder name, case-insensitively (so both `HotpotQA`
and the upstream folder name `HotpotQA_rand1000` work in configs). Unknown names get a "did you mean" hint.

The paper's benchmarks (`list_benchmarks`) read a folder of the ASearcher-test-data release. Run benchmarks
(`source: run`, `list_run_benchmarks`) read a file the run itself produces, passed to
`asearcher eval --questions FILE`: `train-questions`, the RL training questions, flagged `in_distribution` (the
evaluated models trained on them; names of such benchmarks start with "train-", which figures label so).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from asearcher.errors import UserFacingError
from asearcher.eval.metrics import parse_metric_list
from asearcher.utils.registry import Registry, UnknownNameError

BENCHMARK_DIR = Path(__file__).with_name("benchmarks")

Format = Literal["jsonl", "json", "frames_csv", "xbench_csv", "gaia_json"]


class BenchmarkFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="File name inside the benchmark's release folder.")
    format: Format = Field(description="How to read it (jsonl and json both accept a JSON list or JSONL).")


class BenchmarkSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Canonical name (used in result paths and tables).")
    aliases: list[str] = Field(default_factory=list, description="Other accepted names.")
    source: Literal["test-data", "run"] = Field(
        "test-data",
        description="Where the questions are: 'test-data', a folder of the ASearcher-test-data release; 'run', a "
        "file the run produces (e.g. its RL training questions), given as `asearcher eval --questions FILE`.",
    )
    in_distribution: bool = Field(
        False,
        description="The evaluated models trained on these questions (not a held-out test set); the protocol card "
        "says so.",
    )
    folder: str | None = Field(
        None,
        description="Folder inside the ASearcher-test-data release (upstream spelling); source test-data.",
    )
    files: list[BenchmarkFile] = Field(
        min_length=1,
        description="Candidate files; the first that exists is read (source run: the first names the format).",
    )
    id_fields: list[str] = Field(
        default_factory=lambda: ["id"], description="Id field candidates; none -> row index."
    )
    question_fields: list[str] = Field(
        min_length=1, description="Question field candidates, first present wins."
    )
    answer_fields: list[str] = Field(min_length=1, description="Gold answer field candidates (str or list).")
    paper_size: int | None = Field(
        None, ge=1, description="Number of questions the paper evaluates (source test-data)."
    )
    metrics: list[str] = Field(min_length=1, description="Default metrics ('judge' = LLM-as-judge).")
    k: int = Field(4, ge=1, description="Default samples per question (Avg@k / Pass@k).")
    language: str = Field("en", description="Language of the questions.")
    settings: list[Literal["local", "web"]] = Field(description="Settings the paper evaluates it in.")
    sealed: bool = Field(False, description="Encrypted upstream: questions/answers stay sealed in memory.")
    editions: dict[str, str] = Field(
        default_factory=dict,
        description="sha256 of a known release file -> its edition, for benchmarks published in several editions "
        "whose scores are not comparable (the protocol card names the edition a run used).",
    )
    paper_edition: str | None = Field(None, description="The edition the paper evaluated (with `editions`).")

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, v: list[str]) -> list[str]:
        return parse_metric_list(v, allow_model_metrics=True)

    @model_validator(mode="after")
    def _release_benchmarks_name_their_folder(self) -> BenchmarkSpec:
        if self.source == "test-data":
            missing = [k for k in ("folder", "paper_size") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"a test-data benchmark needs {' and '.join(missing)}")
        return self

    @property
    def names(self) -> list[str]:
        return [self.name, *self.aliases, *([self.folder] if self.folder else [])]

    def resolve_file(self, test_data_dir: str | Path) -> tuple[Path, str]:
        """The first candidate file that exists under <test_data_dir>/<folder>/, and its format."""
        if self.folder is None:
            raise UserFacingError(
                f"benchmark {self.name}: its questions are a file of the run, not of ASearcher-test-data: "
                "pass it with `asearcher eval --questions FILE`"
            )
        base = Path(test_data_dir) / self.folder
        for f in self.files:
            p = base / f.name
            if p.is_file():
                return p, f.format
        tried = ", ".join(str(base / f.name) for f in self.files)
        raise UserFacingError(
            f"benchmark {self.name}: no data file found (tried {tried}). Fetch the test data with "
            "`asearcher fetch-data --release test-data --output DIR` and pass DIR/ASearcher-test-data."
        )


class RegistryError(UnknownNameError):
    pass


def _load_spec(path: Path) -> BenchmarkSpec:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise UserFacingError(f"{path}: not valid YAML: {e}") from None
    try:
        return BenchmarkSpec.model_validate(raw)
    except ValidationError as e:
        lines = [f"{path}: invalid benchmark spec:"]
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"]) or "<root>"
            lines.append(f"  {key}: {'unknown key' if err['type'] == 'extra_forbidden' else err['msg']}")
        raise UserFacingError("\n".join(lines)) from None


@cache
def _registry(directory: str) -> Registry[BenchmarkSpec]:
    reg: Registry[BenchmarkSpec] = Registry("benchmark", case_insensitive=True, show=str, error=RegistryError)
    for path in sorted(Path(directory).glob("*.yaml")):
        spec = _load_spec(path)
        reg.register(spec.name, spec, aliases=[n for n in spec.names[1:] if n.lower() != spec.name.lower()])
    return reg


def _specs(directory: str | Path, source: str) -> list[BenchmarkSpec]:
    specs = (spec for _, spec in _registry(str(directory)).items() if spec.source == source)
    return sorted(specs, key=lambda s: s.name.lower())


def list_benchmarks(directory: str | Path = BENCHMARK_DIR) -> list[BenchmarkSpec]:
    """The paper's benchmarks (folders of the ASearcher-test-data release)."""
    return _specs(directory, "test-data")


def list_run_benchmarks(directory: str | Path = BENCHMARK_DIR) -> list[BenchmarkSpec]:
    """The benchmarks whose questions a run produces (train-questions)."""
    return _specs(directory, "run")


def get_benchmark(name: str, directory: str | Path = BENCHMARK_DIR) -> BenchmarkSpec:
    return _registry(str(directory)).get(name)
