"""Base class for every config section: unknown keys and wrong types are errors naming the key."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A strict config section. Fields carry `description=` so the JSON schema documents them."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())
