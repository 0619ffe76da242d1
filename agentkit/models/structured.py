"""`with_structured_output` for local chat models: schema -> grammar-bound model | parser."""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from langchain_core.output_parsers import JsonOutputKeyToolsParser, JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.openai_tools import PydanticToolsParser
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from pydantic import BaseModel

from agentkit.errors import BadInputError

_METHODS = ("json_schema", "function_calling", "json_mode")


def _is_pydantic(schema: Any) -> bool:
    from pydantic import v1

    return isinstance(schema, type) and issubclass(schema, (BaseModel, v1.BaseModel))


def structured_runnable(
    model: Any,
    schema: dict[str, Any] | type,
    *,
    method: str,
    include_raw: bool,
    strict: bool | None,
    **kwargs: Any,
) -> Runnable:
    if kwargs:
        raise BadInputError(
            f"Unknown with_structured_output option(s): {', '.join(sorted(kwargs))}.",
            fix="use method=, include_raw= or strict=.",
        )
    if method not in _METHODS:
        raise BadInputError(f"Unknown method {method!r}.", fix=f"use one of {', '.join(_METHODS)}.")
    ls_format = {"kwargs": {"method": method, "strict": strict}, "schema": schema}
    if method == "function_calling":
        name = convert_to_openai_tool(schema)["function"]["name"]
        bound = model.bind_tools([schema], tool_choice=name, ls_structured_output_format=ls_format)
        parser: Runnable = (
            PydanticToolsParser(tools=[schema], first_tool_only=True)
            if _is_pydantic(schema)
            else JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
        )
    else:
        if method == "json_mode":
            # JSON mode promises only "some JSON object"; since we hold the schema anyway, the
            # grammar enforces it too, so the parser below cannot fail on a missing key.
            response_format: dict[str, Any] = {"type": "json_object", "schema": convert_to_json_schema(schema)}
        else:
            response_format = {"type": "json_schema", "json_schema": {"schema": convert_to_json_schema(schema)}}
        bound = model.bind(response_format=response_format, ls_structured_output_format=ls_format)
        parser = PydanticOutputParser(pydantic_object=schema) if _is_pydantic(schema) else JsonOutputParser()

    if not include_raw:
        return bound | parser
    parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
    fallback = RunnablePassthrough.assign(parsed=lambda _: None)
    return RunnableMap(raw=bound) | parsed.with_fallbacks([fallback], exception_key="parsing_error")
