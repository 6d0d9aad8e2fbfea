"""Shared pydantic configuration for the API types.

Field names are the Python spelling of the Kubernetes JSON names (``componentName`` -> ``component_name``);
aliases carry the JSON name, and attribute docstrings become the OpenAPI descriptions of the CRD, so the models
stay the single source of both the validation and the generated schema.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """Base of every API type: camelCase aliases, attribute docstrings as descriptions, unknown fields ignored.

    Unknown fields are ignored rather than rejected so that an older operator keeps working against a newer CRD;
    the API server's structural schema already prunes fields the CRD does not know.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        extra="ignore",
        validate_default=True,
    )

    def to_json(self) -> dict[str, Any]:
        """The Kubernetes JSON form: camelCase keys, unset optional fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")
