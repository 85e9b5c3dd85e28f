"""Request and response models of the OpenAI-compatible API, apart from routes and engines.

Shapes follow the OpenAI API reference (chat completions, completions, models, errors), as vLLM's
`entrypoints/openai` does. Request models are the opposite of l2s configs: they accept unknown fields
(`extra="allow"`), because OpenAI clients send parameters l2s does not use, and the route logs them.
Fields that are not in the OpenAI spec say so in a comment.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Mode = Literal["short", "long", "auto"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    def unknown_fields(self) -> list[str]:
        return sorted(self.model_extra or {})


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


def _utf8(text: str) -> str:
    """Reject strings the tokenizer cannot encode (lone UTF-16 surrogates are valid JSON)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid UTF-8 (found a lone surrogate)") from None
    return text


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "developer", "tool"]
    # OpenAI also allows a list of content parts; l2s models are text-only, so parts must be text.
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return _utf8(self.content)
        parts = []
        for part in self.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ValueError("only text content parts are supported")
            parts.append(part["text"])
        return _utf8("".join(parts))


class _Sampling(_Request):
    """Parameters shared by chat and text completions."""

    model: str | None = None  # OpenAI requires it; l2s falls back to the configured default model
    max_tokens: int | None = Field(None, ge=1)
    n: int = Field(1, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)  # torch seeds are 64-bit
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    # l2s extension (not in the OpenAI spec): which model family member answers; see ModePolicy.
    mode: Mode | None = None
    # OpenAI reasoning models' effort knob; l2s maps it to a model and budget, or a mode (see ModePolicy).
    # Any string parses: ModePolicy answers an unknown level with OpenAI's 400 listing the valid ones.
    reasoning_effort: str | None = Field(
        None, description="none, minimal, low, medium, high, xhigh or max; another value gets a 400"
    )
    # l2s extension (not in the OpenAI spec): thinking budget; "</think>" is forced after N reasoning tokens.
    max_thinking_tokens: int | None = Field(None, ge=0)

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, v: str | list[str] | None) -> list[str] | None:
        if v is None:
            return None
        stops = [v] if isinstance(v, str) else v
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop takes at most 4 non-empty strings")
        return stops


class ChatCompletionRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)  # OpenAI's newer name for max_tokens
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=0)  # only the sampled token's logprob is returned

    @model_validator(mode="after")
    def _text_messages(self) -> ChatCompletionRequest:
        for i, m in enumerate(self.messages):
            try:
                m.text()
            except ValueError as e:
                raise ValueError(f"messages[{i}]: {e}") from None
        return self

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def prompt_messages(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.text()} for m in self.messages]


class CompletionRequest(_Sampling):
    prompt: str | list[str]
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=1)  # 1 = the sampled token's logprob; no alternatives

    @field_validator("prompt")
    @classmethod
    def _non_empty(cls, v: str | list[str]) -> str | list[str]:
        prompts = [v] if isinstance(v, str) else v
        if not prompts or any(not p for p in prompts):
            raise ValueError("prompt must hold at least one non-empty string")
        for p in prompts:
            _utf8(p)
        return v

    def requested_max_tokens(self) -> int | None:
        return self.max_tokens

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


# ---- responses ---------------------------------------------------------------------------------------


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


class CompletionTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    completion_tokens_details: CompletionTokensDetails


class Routing(BaseModel):
    """l2s extension (not in the OpenAI spec): how ModePolicy answered the request."""

    mode: Mode | None  # short | long | auto; None when an extra model was named directly
    model: str  # the served model that produced the answer
    escalated: bool = False  # auto only: the short answer was not confident enough, the long one answered
    confidence: float | None = None  # auto only: the short answer's confidence
    threshold: float | None = None  # auto only: the calibrated threshold it was compared with
    attempt_tokens: int | None = None  # auto, escalated: completion tokens of the discarded short answer
    effort: str | None = None  # the reasoning_effort level that chose the model (with an effort map)
    thinking_budget: int | None = None  # the thinking budget the answer was generated under, if any


class TokenLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[dict[str, Any]] = Field(default_factory=list)


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None = None


class ChatMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    # Not in the OpenAI spec; the name DeepSeek and vLLM use for the think block's text.
    reasoning_content: str | None = None


class ChatChoice(BaseModel):
    index: int
    message: ChatMessage
    finish_reason: str | None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(BaseModel):
    id: str = Field(default_factory=lambda: _id("chatcmpl"))
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChoice]
    usage: Usage
    l2s: Routing  # l2s extension (not in the OpenAI spec)


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None  # not in the OpenAI spec (see ChatMessage)


class ChunkChoice(BaseModel):
    index: int
    delta: DeltaMessage
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    l2s: Routing | None = None  # l2s extension (not in the OpenAI spec)


class CompletionLogprobs(BaseModel):
    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float] = Field(default_factory=list)
    text_offset: list[int] = Field(default_factory=list)
    top_logprobs: list[dict[str, float]] | None = None


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: str | None
    logprobs: CompletionLogprobs | None = None


class Completion(BaseModel):
    id: str = Field(default_factory=lambda: _id("cmpl"))
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    l2s: Routing | None = None  # l2s extension (not in the OpenAI spec)


class EffortCard(BaseModel):
    """l2s extension (not in the OpenAI spec): what serves one reasoning_effort level, as measured."""

    model: str  # the served model
    thinking_budget: int | None = None
    accuracy: float | None = None  # measured on the held-out problems of the run that made the map
    accuracy_ci95: list[float] | None = None
    mean_tokens: float | None = None  # mean completion tokens there


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "l2s"
    # l2s extension (not in the OpenAI spec): what serves this name.
    kind: Literal["alias", "model"] = "model"
    mode: Mode | None = None
    # l2s extension (not in the OpenAI spec), on the `l2s` alias: reasoning_effort level -> what serves it,
    # the level a request without reasoning_effort gets, and the accepted aliases of levels.
    effort: dict[str, EffortCard] | None = None
    default_effort: str | None = None
    effort_aliases: dict[str, str] | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorInfo
