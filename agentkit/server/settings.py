"""`ServeSettings`: where the server listens, its key, and the limits every request is held to."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentkit.models.engines import Engine

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ServeSettings(BaseModel):
    """Settings of one `agentkit serve`; a request past a limit gets a 400, 413 or 429, never a crash."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(default="127.0.0.1", description="address to bind; 127.0.0.1 keeps it on this machine")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port; 0 picks a free one")
    api_key: str | None = Field(
        default=None, min_length=1, description="when set, every request needs `Authorization: Bearer KEY`"
    )
    home: str | None = Field(default=None, description="registry root; default $AGENTKIT_HOME")
    engine: Engine = Field(default=Engine.AUTO, description="auto | transformers | llamacpp, for every chat model")
    max_body_bytes: int = Field(default=1 << 20, gt=0, description="request bodies above this get 413")
    max_tokens: int = Field(default=2048, gt=0, description="cap on max_tokens / max_completion_tokens (else 400)")
    default_max_tokens: int = Field(default=512, gt=0, description="a reply's budget when the request sets none")
    max_concurrent_generations: int = Field(
        default=8, gt=0, description="chat generations in flight; one more gets 429 (they queue on the engine)"
    )
    # None by default: max_tokens already bounds a generation, and a deadline makes llama.cpp hand
    # every token to Python as it comes (llamacpp._complete), which costs throughput.
    generation_timeout_s: float | None = Field(
        default=None, gt=0, description="seconds one generation may take; then it ends with finish_reason 'length'"
    )
    max_embedding_inputs: int = Field(default=2048, gt=0, description="texts per /v1/embeddings request")
    max_upload_bytes: int = Field(default=512 << 20, gt=0, description="POST /v1/files bodies above this get 413")
    runs_dir: str | None = Field(
        default=None, description="the agent runs the dashboard shows; default $AGENTKIT_RUNS, else ./runs"
    )
    fine_tune_max_steps: int | None = Field(
        default=None, gt=0, description="cap on every fine-tuning job's steps (train.max_steps); None: its epochs decide"
    )

    @model_validator(mode="after")
    def _default_within_cap(self) -> ServeSettings:
        if self.default_max_tokens > self.max_tokens:
            raise ValueError(
                f"default_max_tokens ({self.default_max_tokens}) is above max_tokens ({self.max_tokens}); "
                "lower default_max_tokens or raise max_tokens"
            )
        return self

    @property
    def loopback_only(self) -> bool:
        return self.host in LOOPBACK or self.host.startswith("127.")
