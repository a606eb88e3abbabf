"""Request bodies the doors read themselves, in the OpenAPI schema.

The doors authenticate before they parse (a signature is over the raw bytes; an unauthenticated body
must cost no parsing), so FastAPI never sees their body parameters. `json_body(Model)` documents the
body a route expects; `install(app)` adds those models to the schema's components, where schemathesis,
Swagger UI and client generators find them.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

_MODELS: dict[str, type[BaseModel]] = {}
REF = "#/components/schemas/{model}"


def json_body(model: type[BaseModel], media_type: str = "application/json") -> dict[str, Any]:
    """`openapi_extra` for a route whose body is `model`, sent as `media_type`."""
    _MODELS[model.__name__] = model
    schema = {"$ref": REF.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {media_type: {"schema": schema}}}}


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, model in _MODELS.items():
                full = model.model_json_schema(ref_template=REF)
                for def_name, definition in full.pop("$defs", {}).items():
                    components.setdefault(def_name, definition)
                components.setdefault(name, full)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
