"""The API described: ``GET /openapi.json`` generated from the routes' models, ``GET /docs`` to read it.

spectree builds the document from the models each route declares (``qa.http.validation``); this
module adds what only the running app knows (the question-length setting, the bearer key) and
serves Swagger UI from the files shipped in the ``flask-swagger-ui`` wheel: no CDN, works offline.
"""

from __future__ import annotations

import copy
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify
from flask_swagger_ui import get_swaggerui_blueprint

from qa.http.models import QUESTION_LIMIT_KEY
from qa.http.validation import spec

DOCUMENT_PATH = "/openapi.json"
docs = Blueprint("docs", __name__)


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of the app serving this request (built once per app)."""
    document = current_app.extensions.get("qa_openapi")
    if document is None:
        document = with_app_settings(copy.deepcopy(spec.spec), current_app)
        current_app.extensions["qa_openapi"] = document
    return document


def with_app_settings(document: dict[str, Any], app: Flask) -> dict[str, Any]:
    """Fill in the app's own limits and security scheme."""
    settings = app.extensions["qa_settings"]
    pending: list[Any] = [document]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if node.get(QUESTION_LIMIT_KEY) == "max_question_chars":
                node["maxLength"] = settings.max_question_chars
            elif node.get(QUESTION_LIMIT_KEY) == "models":
                for option in node.get("anyOf", [node]):
                    if option.get("type") == "string":
                        option["enum"] = [model.name for model in app.extensions["qa_library"].encoders.values()]
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    document.setdefault("components", {})["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "QA_API_KEY, when one is set"}
    }
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            view = app.view_functions.get(_endpoint_of(app, path, method))
            access = getattr(view, "access", "open")
            if access == "write" or (access == "read" and settings.protect_reads):
                operation["security"] = [{"bearer": []}] if settings.api_key else []
    document.pop("security", None)
    return document


def _endpoint_of(app: Flask, path: str, method: str) -> str:
    rule_path = path.replace("{", "<").replace("}", ">")
    for rule in app.url_map.iter_rules():
        if rule.rule == rule_path and method.upper() in (rule.methods or ()):
            return rule.endpoint
    return ""


@docs.get(DOCUMENT_PATH)
def openapi_json():
    return jsonify(openapi_document())


def register_docs(app: Flask) -> None:
    """``/openapi.json`` and Swagger UI at ``/docs/``."""
    app.register_blueprint(docs)
    app.register_blueprint(
        get_swaggerui_blueprint("/docs", DOCUMENT_PATH, config={"app_name": "qa API", "deepLinking": True})
    )
