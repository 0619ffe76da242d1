"""OpenAI's error shape, `{"error": {"message", "type", "param", "code"}}`, and the one table that maps
agentkit's exceptions to a status and that shape. Clients (the `openai` package, LangChain) pick the
exception class they raise from the status alone, so the status is what must be right."""

from __future__ import annotations

from typing import Any

from agentkit.errors import AgentkitError, BadInputError, ModelNotInstalledError, UnknownModelError

INVALID = "invalid_request_error"


class ApiError(Exception):
    """An error reply: the HTTP status and OpenAI's four fields."""

    def __init__(
        self, status: int, message: str, *, type: str = INVALID, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def model_not_found(model: str, *, fix: str = "GET /v1/models lists the ids this server runs.") -> ApiError:
    return ApiError(404, f"The model {model!r} does not exist. Fix: {fix}", param="model", code="model_not_found")


# Most specific first: UnknownModelError and ModelNotInstalledError are BadInputErrors too.
_TABLE: list[tuple[type[BaseException], int, str, str | None]] = [
    (UnknownModelError, 404, INVALID, "model_not_found"),
    (ModelNotInstalledError, 404, INVALID, "model_not_found"),
    (BadInputError, 400, INVALID, None),
    (AgentkitError, 500, "server_error", None),
]


def from_exception(exc: BaseException, *, param: str | None = None, failed: str = "The server") -> ApiError:
    """The reply for `exc`: our own errors by the table, anything else a 500 that names it and what
    `failed` ("The engine" around a generation)."""
    if isinstance(exc, ApiError):
        return exc
    for kind, status, type_, code in _TABLE:
        if isinstance(exc, kind):
            message = exc.one_line() if isinstance(exc, AgentkitError) else str(exc)
            if code == "model_not_found":
                param = "model"
            return ApiError(status, message, type=type_, param=param, code=code)
    # Say what failed and why, so the client sees more than "500".
    return ApiError(500, f"{failed} failed: {type(exc).__name__}: {exc}", type="server_error")
