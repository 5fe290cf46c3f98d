"""How a route declares its models, and how a request is checked before its view runs.

spectree (https://pypi.org/project/spectree/) validates the request against the route's pydantic
models and puts the route, its body, parameters and responses into /openapi.json. This module
adds what spectree leaves to us: our error shape ``{"error": {"code", "message"}}`` with a message
naming the field, the access rule of each route (open, read, write), the body limit of each route,
and a strict JSON reading (spectree reads a malformed body as ``{}``).

Adding a route with models (in any blueprint registered by ``create_app``)::

    @api.post("/things")
    @endpoint(json=ThingRequest, responses={200: ThingBody}, errors=(404,), access="write")
    def things_post(json: ThingRequest):
        \"\"\"Summary line shown in /docs.

        Longer description.
        \"\"\"
        return ThingBody(...)

The view receives the validated model as its ``json`` / ``query`` / ``form`` argument and returns a
response model (status 200), or ``(model, status)``. Errors are raised as ``ApiError`` or as the
core's ``QAError``; every status a route can answer must be listed (``errors``) so the document
says it: 400, 401 (when a key may apply), 403 and 507 (writes), 413, 415 and 500 are added where they apply.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, Literal

from flask import Response, current_app, request
from pydantic import BaseModel, ValidationError
from spectree import Response as Responses
from spectree import SpecTree
from spectree.model_adapter.pydantic_adapter import PydanticModelAdapter
from werkzeug.exceptions import BadRequest

from qa.http.admission import refusal, route_of
from qa.http.models import ErrorBody

Access = Literal["open", "read", "write"]
BodyLimit = Literal["request", "upload"]

class ErrorsInOurShape(PydanticModelAdapter):
    """spectree's pydantic adapter, minus its error body: our hook answers instead (``api_error_from``).

    spectree would encode pydantic's error list, client input included, before calling the hook;
    a lone surrogate in that input cannot be encoded.
    """

    def validation_errors(self, err: ValidationError) -> list:
        return []


spec = SpecTree(
    "flask",
    title="qa: semantic question answering",
    version="1",
    description=(
        "Ask questions over your documents (Chinese, English and other languages), build prompt context "
        "for chatbots, find similar passages, manage documents, and embed text in the OpenAI embeddings "
        "shape. Errors are always JSON {\"error\": {\"code\", \"message\"}}."
    ),
    mode="strict",
    validation_error_status=400,
    validation_error_model=ErrorBody,
    page_templates={},  # /docs serves Swagger UI from local files (qa.http.docs)
    path="spectree",
    model_adapter=ErrorsInOurShape(),
    naming_strategy=lambda model: model.__name__,
    nested_naming_strategy=lambda parent, child: child,
    annotations=False,  # the view gets its models from ``endpoint`` (a route may take JSON or a form)
)


class ApiError(Exception):
    """An error answered with a given status and code."""

    def __init__(self, status: int, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.param = status, code, message, param


# -- declaring routes ------------------------------------------------------------------------------
def endpoint(
    *,
    json: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    form: type[BaseModel] | None = None,
    responses: dict[int, type[BaseModel] | None],
    errors: Iterable[int] = (),
    access: Access = "read",
    body_limit: BodyLimit = "request",
    tags: Iterable[str] = (),
) -> Callable[[Callable], Callable]:
    """Declare a route's request models, responses, access rule and body limit (see the module doc)."""
    statuses = set(errors) | {400, 500}
    if json is not None or form is not None:
        statuses |= {413, 415}
    if access != "open":
        statuses.add(401)
    if access == "write":
        statuses |= {403, 507}  # another origin or a read-only server; a full disk
    models = {f"HTTP_{status}": model for status, model in responses.items()}
    models.update({f"HTTP_{status}": ErrorBody for status in sorted(statuses)})

    def decorate(view: Callable) -> Callable:
        declared = [name for name, model in (("json", json), ("query", query), ("form", form)) if model is not None]

        @functools.wraps(view)
        def with_models(*args: Any, **kwargs: Any) -> Any:
            context = getattr(request, "context", None)
            return view(*args, **kwargs, **{name: getattr(context, name, None) for name in declared})

        validated = spec.validate(
            json=json,
            query=query,
            form=form,
            resp=Responses(**models),
            before=_raise_validation_error,
            tags=list(tags),
        )(with_models)
        validated.access = access
        validated.body_limit = body_limit
        validated.body_kinds = {kind for kind, model in (("json", json), ("form", form)) if model is not None}
        return validated

    return decorate


# -- checking a request before its view -------------------------------------------------------------
def prepare_request() -> Response | None:
    """``before_request`` of the app: key, read-only mode, body limit, origin and JSON syntax, before
    spectree reads the body (the WSGI server asked the first three already; see ``qa.http.admission``)."""
    if request.method == "OPTIONS":
        return None  # a CORS preflight carries no key and no body; Flask answers it
    view = current_app.view_functions.get(request.endpoint or "")
    route = route_of(view) if view is not None else None
    settings = current_app.extensions["qa_settings"]
    refused = refusal(
        settings, route, request.method, request.headers.get("Authorization", ""), request.content_length
    )
    if refused is not None:
        raise ApiError(refused.status, refused.code, refused.message)
    if route is not None and route.access == "write":
        refuse_cross_site_writes()
    if route is not None and route.body_limit == "upload":
        request.max_content_length = settings.max_upload_bytes
        # werkzeug buffers multipart data up to max_form_memory_size, file parts included
        request.max_form_memory_size = max(settings.max_request_bytes, settings.max_upload_bytes)
    kinds = getattr(view, "body_kinds", set())
    if "form" in kinds and request.mimetype == "multipart/form-data":
        return None
    if "json" in kinds:
        read_json_object(also="or a multipart/form-data upload" if "form" in kinds else "")
    return None


def read_json_object(also: str = "") -> dict:
    """The request's JSON object; 415/400 with a precise message otherwise."""
    if not request.is_json:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send a JSON body with 'Content-Type: application/json'{' ' + also if also else ''}"
            f" (got {request.mimetype or 'none'})",
        )
    try:
        body = request.get_json()
    except BadRequest:
        raise ApiError(400, "invalid_json", "the request body is not valid JSON") from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "the request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the request body must be a JSON object, e.g. {\"question\": \"...\"}")
    return body


def refuse_cross_site_writes() -> None:
    """A browser on another site must not change the index (a form post needs no CORS preflight).

    Browsers send ``Origin`` (and ``Sec-Fetch-Site``) with such posts; programs like curl send
    neither and are not affected. Same-origin pages and the CORS allow-list may write.
    """
    origin = request.headers.get("Origin")
    site = request.headers.get("Sec-Fetch-Site", "")
    allowed = current_app.extensions["qa_settings"].cors_origins
    if origin and origin != "null":
        if origin == request.host_url.rstrip("/") or origin in allowed:
            return
    elif site not in ("cross-site", "same-site") and origin is None:
        return
    raise ApiError(
        403,
        "cross_origin_refused",
        f"writes from a web page on another origin ({origin or site}) are refused; "
        "add the page's origin to QA_CORS_ORIGINS to allow it",
    )


# -- validation errors in our shape ----------------------------------------------------------------
EXPECTED = {
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "none_required": "must be null",
}


def _raise_validation_error(req: Any, resp: Any, error: ValidationError | None, instance: Any, adapter: Any) -> None:
    """spectree's hook after validating a request: turn its error into an ``ApiError`` in our shape."""
    if error is not None:
        raise api_error_from(error)


def api_error_from(error: ValidationError) -> ApiError:
    """The first problem of a validation error as a 400 naming the field and what to change."""
    problems = error.errors(include_url=False)
    unknown = [problem for problem in problems if problem["type"] == "extra_forbidden"]
    part = "form field" if error.title.endswith("Form") else "field"
    if unknown:
        names = ", ".join(sorted(str(problem["loc"][0]) for problem in unknown))
        allowed = ", ".join(sorted(_field_names(error.title)))
        return ApiError(400, "unknown_field", f"unknown {part}(s) {names}; allowed: {allowed}", param=names)
    problem = problems[0]
    kind, location = problem["type"], problem["loc"]
    if kind == "missing_question":
        return ApiError(400, "missing_field", "'q' (or 'question') is required", param="q")
    name = field_path(location)
    label = field_label(error.title, location, name)
    if kind == "missing":
        return ApiError(400, "missing_field", f"{label} is required", param=name)
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        bound = _bounds(error.title, location)
        return ApiError(400, "invalid_field", f"{label} must be {bound}, got {_shown(problem['input'])}", param=name)
    if kind == "literal_error":
        expected = problem.get("ctx", {}).get("expected", "")
        return ApiError(
            400, "invalid_field", f"{label} must be one of {expected}, got {_shown(problem['input'])}", param=name
        )
    ctx = problem.get("ctx", {})
    if kind == "question_too_long":
        return ApiError(400, "too_long", f"{label} {problem['msg']}", param=name)
    if kind == "too_long":
        message = f"{label} has {len(problem['input'])} items; the limit is {ctx.get('max_length')}"
        return ApiError(400, "too_long", message, param=name)
    if kind == "too_short":
        return ApiError(400, "invalid_field", f"{label} must have at least {ctx.get('min_length')} item(s)", param=name)
    if kind in ("string_too_short", "empty_field"):
        return ApiError(400, "empty_field", f"{label} must contain some text", param=name)
    if kind == "string_too_long":
        message = f"{label} is longer than {ctx.get('max_length')} characters"
        return ApiError(400, "too_long", message, param=name)
    if kind in EXPECTED:
        return ApiError(
            400, "invalid_field", f"{label} {EXPECTED[kind]}, got {_type_name(problem['input'])}", param=name
        )
    return ApiError(400, "invalid_field", f"{label} {problem['msg']}", param=name)


def field_label(title: str, location: tuple, name: str) -> str:
    """``'top_k'``, or ``'q' (the question)`` for a field whose declared title says what it is."""
    model = _model(title)
    field = model.model_fields.get(str(location[0])) if model and location else None
    return f"'{name}' (the {field.title})" if field is not None and field.title else f"'{name}'"


def field_path(location: tuple) -> str:
    """``filter.city``, ``documents[2]``, ``questions[0]`` from a pydantic error location."""
    path = ""
    for part in location:
        if part == "[key]":
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _type_name(value: Any) -> str:
    return {type(None): "null", bool: "boolean", str: "a string", int: "an integer", float: "a number",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _model(title: str) -> type[BaseModel] | None:
    from qa.http import models

    model = getattr(models, title, None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _field_names(title: str) -> list[str]:
    model = _model(title)
    return list(model.model_fields) if model else []


def _bounds(title: str, location: tuple) -> str:
    """'between 1 and 50' from the field's declared limits (its JSON schema)."""
    model = _model(title)
    schema = model.model_json_schema()["properties"].get(str(location[0]), {}) if model and location else {}
    for option in [schema, *schema.get("anyOf", [])]:
        low, high = option.get("minimum"), option.get("maximum")
        if low is not None or high is not None:
            if low is not None and high is not None:
                return f"between {low:g} and {high:g}"
            return f"at least {low:g}" if low is not None else f"at most {high:g}"
    return "in range"
