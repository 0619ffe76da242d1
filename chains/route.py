"""Routing: pick a destination per input -- a chain, or an adapter of the loaded chat model -- by
the model's choice among the routes' descriptions, then run it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig

from agentkit.errors import BadInputError


@dataclass(frozen=True)
class Route:
    description: str
    runnable: Any = None  # a chain taking the question
    adapter: str | None = None  # or: answer with this adapter of the router's local chat model


class RouteChain(Runnable[Any, dict[str, Any]]):
    """`invoke(question)` -> {"route", "score", "output"}.

    `by="embeddings"` (default) picks the route whose description is nearest to the question
    (cosine of MiniLM embeddings; score is that cosine): reliable even when the chat model is a
    135M one, which routed "who scored in the football final?" to cooking by its own choice.
    `by="model"` lets the chat model choose by log-probability (see scoring.choose).
    """

    def __init__(self, routes: dict[str, Route], model: Any, prompt: str = "route", *, by: str = "embeddings",
                 embeddings: Any = None) -> None:  # fmt: skip
        from agentkit.prompts import load_prompt

        if not routes:
            raise BadInputError("route_chain needs at least one route.", fix="pass routes={'name': Route(...)}.")
        for name, route in routes.items():
            if (route.runnable is None) == (route.adapter is None):
                raise BadInputError(f"route {name!r} needs exactly one of runnable= or adapter=.",
                                    fix="give the route a chain, or an adapter id of the router's model.")  # fmt: skip
        if by not in ("embeddings", "model"):
            raise BadInputError(f"Unknown router {by!r}.", fix="use by='embeddings' or by='model'.")
        self.routes, self.model, self.prompt, self.by = routes, model, load_prompt(prompt), by
        self._embeddings, self._route_vectors = embeddings, None

    def pick(self, question: str) -> tuple[str, float]:
        if self.by == "embeddings":
            return self._nearest(question)
        from agentkit.chains.scoring import choose

        listed = [{"name": n, "description": r.description} for n, r in self.routes.items()]
        return choose(self.model, lambda q: self.prompt.format_messages(question=q, routes=listed), question,
                      list(self.routes))  # fmt: skip

    def _nearest(self, question: str) -> tuple[str, float]:
        import numpy as np

        if self._embeddings is None:
            from agentkit.models import LocalEmbeddings

            self._embeddings = LocalEmbeddings()
        if self._route_vectors is None:
            texts = [f"{name}: {r.description}" for name, r in self.routes.items()]
            self._route_vectors = np.asarray(self._embeddings.embed_documents(texts))
        vectors, query = self._route_vectors, np.asarray(self._embeddings.embed_query(question))
        cos = vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query) + 1e-12)
        best = int(cos.argmax())
        return list(self.routes)[best], float(cos[best])

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> dict[str, Any]:
        question = input.get("question", "") if isinstance(input, dict) else str(input)
        name, score = self.pick(question)
        route = self.routes[name]
        if route.adapter is not None:
            output = self.model.bind(adapter=route.adapter).invoke(question, config=config)
        else:
            output = route.runnable.invoke(question, config=config)
        return {"route": name, "score": score, "output": output}


def route_chain(routes: dict[str, Route], model: Any = None, **kwargs: Any) -> RouteChain:
    """A router over `routes`; `model` (default the built-in chat model) runs adapter routes and,
    with by="model", makes the choice."""
    if model is None:
        from agentkit.models import LocalChatModel

        model = LocalChatModel()
    return RouteChain(routes, model, **kwargs)
