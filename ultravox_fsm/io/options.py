"""What a call is created from: the model's options, checked once, and the call-creation body.

`Options.from_kwargs` takes every constructor parameter of livekit-plugins-ultravox (plus ours)
and refuses what the API would refuse later, with the option's name in the message (`checks`):
a bad option must fail the constructor, not end a session mid-call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from livekit.agents import APIConnectOptions, llm

from ..call import (
    CallMedium,
    InitialMessage,
    ServerWebSocketMedium,
    StartAgentCallRequest,
    StartCallRequest,
    encode_start_call,
)
from ..runner import EngineOptions
from . import checks
from .tools import to_server_tools

DEFAULT_BASE_URL = "https://api.ultravox.ai/api"
DEFAULT_MODEL = "fixie-ai/ultravox"
DEFAULT_VOICE = "Mark"
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."

FIRST_SPEAKER: dict[str, dict[str, Any] | None] = {
    "FIRST_SPEAKER_USER": {"user": {}},
    "FIRST_SPEAKER_AGENT": {"agent": {}},
    "FIRST_SPEAKER_UNSPECIFIED": None,
}
# Set by the library and changed during a session (instructions, output medium, history), so
# extra_call_fields may not set them: a value fixed at construction would conflict later.
_LIBRARY_OWNED = ("systemPrompt", "initialOutputMedium", "initialMessages")


@dataclass
class Options:
    """Everything a call is created from; each session works on its own copy (D13)."""

    model: str
    voice: str
    external_voice: dict[str, Any] | None
    api_key: str
    base_url: str
    system_prompt: str
    output_medium: Literal["text", "voice"]
    input_sample_rate: int
    output_sample_rate: int
    temperature: float | None
    language_hint: str | None
    max_duration: str | None
    join_timeout: str | None
    time_exceeded_message: str | None
    enable_greeting_prompt: bool | None
    first_speaker_settings: dict[str, Any] | None
    vad_settings: dict[str, Any] | None
    metadata: dict[str, str] | None
    recording_enabled: bool | None
    agent_id: str | None
    template_context: dict[str, Any] | None
    throttle: str | None
    server_tools: list[dict[str, Any]]
    extra_call_fields: dict[str, Any]
    client_buffer_size_ms: int
    tool_timeout: float | None
    conn_options: APIConnectOptions
    engine: EngineOptions
    audio_buffer_ms: int
    say_interruptible: bool
    tool_settings: dict[str, dict[str, Any]]
    trace_dir: str | None
    data_messages: dict[str, bool]
    transport: Literal["aiohttp", "lean"] = "aiohttp"

    @classmethod
    def from_kwargs(
        cls,
        *,
        model: str,
        voice: str,
        external_voice: dict[str, Any] | None,
        api_key: str | None,
        base_url: str | None,
        system_prompt: str,
        output_medium: str,
        input_sample_rate: int,
        output_sample_rate: int,
        temperature: float | None,
        language_hint: str | None,
        max_duration: str | float | None,
        join_timeout: str | float | None,
        time_exceeded_message: str | None,
        enable_greeting_prompt: bool | None,
        first_speaker: str | None,
        first_speaker_settings: dict[str, Any] | None,
        vad_settings: dict[str, Any] | None,
        metadata: dict[str, str] | None,
        recording_enabled: bool | None,
        agent_id: str | None,
        template_context: dict[str, Any] | None,
        throttle: str | None,
        server_tools: list[str | dict[str, Any]] | None,
        extra_call_fields: dict[str, Any] | None,
        client_buffer_size_ms: int,
        reply_timeout: float,
        tool_timeout: float | None,
        conn_options: APIConnectOptions,
        audio_buffer_ms: int,
        say_interruptible: bool,
        user_speech_events: bool,
        trace_dir: str | None,
        tool_settings: dict[str, dict[str, Any]] | None,
        transport: str = "aiohttp",
    ) -> Options:
        if output_medium not in ("text", "voice"):
            raise ValueError(f"output_medium must be 'text' or 'voice', got {output_medium!r}")
        key = api_key or os.environ.get("ULTRAVOX_API_KEY")
        if not key:
            raise ValueError("Ultravox API key is required: pass api_key or set ULTRAVOX_API_KEY")
        if external_voice is not None and voice != DEFAULT_VOICE:
            raise ValueError("voice and external_voice are mutually exclusive")
        if first_speaker is not None and first_speaker not in FIRST_SPEAKER:
            raise ValueError(f"first_speaker must be one of {sorted(FIRST_SPEAKER)}")
        speaker = (
            checks.first_speaker_settings(first_speaker_settings)
            if first_speaker_settings is not None
            else FIRST_SPEAKER.get(first_speaker)
            if first_speaker is not None
            else None
        )
        for name, value in (
            ("external_voice", external_voice),
            ("template_context", template_context),
            ("extra_call_fields", extra_call_fields),
            ("tool_settings", tool_settings),
        ):
            checks.check_json(name, value)
        checks.positive_int("input_sample_rate", input_sample_rate)
        checks.positive_int("output_sample_rate", output_sample_rate)
        checks.positive_int("client_buffer_size_ms", client_buffer_size_ms, zero=True)
        api = (base_url or os.environ.get("ULTRAVOX_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        if agent_id is not None:
            _check_agent_call(
                agent_id,
                model=model,
                system_prompt=system_prompt,
                external_voice=external_voice,
                temperature=temperature,
                language_hint=language_hint,
                time_exceeded_message=time_exceeded_message,
                enable_greeting_prompt=enable_greeting_prompt,
                vad_settings=vad_settings,
            )
        elif template_context is not None:
            raise ValueError("template_context needs agent_id: it fills a saved agent's template")
        if throttle is not None and not (isinstance(throttle, str) and throttle):
            raise ValueError(f"throttle must be a throttle's name or id, got {throttle!r}")
        if transport not in ("aiohttp", "lean"):
            raise ValueError(f"transport must be 'aiohttp' or 'lean', got {transport!r}")

        def optional(check: checks.Field, name: str, value: Any) -> Any:
            return None if value is None else check(name, value)

        options = cls(
            model=model,
            voice=voice,
            external_voice=external_voice,
            api_key=key,
            base_url=api,
            system_prompt=system_prompt,
            output_medium="text" if output_medium == "text" else "voice",
            input_sample_rate=input_sample_rate,
            output_sample_rate=output_sample_rate,
            temperature=optional(_temperature, "temperature", temperature),
            language_hint=optional(checks.text, "language_hint", language_hint),
            max_duration=optional(checks.duration, "max_duration", max_duration),
            join_timeout=optional(checks.duration, "join_timeout", join_timeout),
            time_exceeded_message=optional(
                checks.text, "time_exceeded_message", time_exceeded_message
            ),
            enable_greeting_prompt=enable_greeting_prompt,
            first_speaker_settings=speaker,
            vad_settings=None if vad_settings is None else checks.vad_settings(vad_settings),
            metadata=None if metadata is None else checks.metadata(metadata),
            recording_enabled=optional(checks.flag, "recording_enabled", recording_enabled),
            agent_id=agent_id,
            template_context=template_context,
            throttle=throttle,
            server_tools=to_server_tools(server_tools or []),
            extra_call_fields=dict(extra_call_fields or {}),
            client_buffer_size_ms=client_buffer_size_ms,
            tool_timeout=tool_timeout,
            conn_options=conn_options,
            engine=EngineOptions(
                reply_timeout=reply_timeout,
                tool_timeout=(tool_timeout + 5.0) if tool_timeout is not None else 45.0,
                max_retry=conn_options.max_retry,
                retry_interval=conn_options.retry_interval,
            ),
            audio_buffer_ms=audio_buffer_ms,
            say_interruptible=say_interruptible,
            tool_settings=dict(tool_settings or {}),
            trace_dir=trace_dir
            if trace_dir is not None
            else os.environ.get("ULTRAVOX_FSM_TRACE_DIR"),
            data_messages=(
                {"userStartedSpeaking": True, "userStoppedSpeaking": True}
                if user_speech_events
                else {}
            ),
            transport="lean" if transport == "lean" else "aiohttp",
        )
        options.check_extra_fields()
        return options

    def check_extra_fields(self) -> None:
        """Refuse, at construction, ``extra_call_fields`` that conflict with the library's own
        body (`merge_fields`) or set what the library changes during a session."""
        for owned in _LIBRARY_OWNED:
            if owned in self.extra_call_fields:
                raise ValueError(
                    f"extra_call_fields.{owned} is set by the library during the session "
                    "(from system_prompt and the instructions, output_medium, the conversation)"
                )
        self.call_body([], None, None)

    @property
    def calls_base(self) -> str:
        """Where call creation posts ``/calls``: the API root, or a saved agent's URL under it
        (``POST /agents/{id}/calls``)."""
        if self.agent_id is None:
            return self.base_url
        return f"{self.base_url}/agents/{quote(self.agent_id, safe='')}"

    def call_body(
        self,
        tool_defs: list[dict[str, Any]],
        prior_call_id: str | None,
        history: list[InitialMessage] | None,
    ) -> tuple[bytes, dict[str, str]]:
        """The body and query of call creation: continue ``prior_call_id``, or start over with
        ``history`` as ``initialMessages``. An agent call cannot take ``priorCallId``, so it
        always starts over with the history."""
        query: dict[str, str] = {}
        if self.throttle is not None:
            query["throttle"] = self.throttle
        tools = [*tool_defs, *self.server_tools] or None
        medium = CallMedium(
            server_web_socket=ServerWebSocketMedium(
                input_sample_rate=self.input_sample_rate,
                output_sample_rate=self.output_sample_rate,
                client_buffer_size_ms=self.client_buffer_size_ms,
                data_messages=self.data_messages or None,
            )
        )
        text: Literal["MESSAGE_MEDIUM_TEXT"] | None = (
            "MESSAGE_MEDIUM_TEXT" if self.output_medium == "text" else None
        )
        request: StartCallRequest | StartAgentCallRequest
        if self.agent_id is not None:
            request = StartAgentCallRequest(
                template_context=self.template_context,
                initial_messages=history or None,
                metadata=self.metadata,
                medium=medium,
                join_timeout=self.join_timeout,
                max_duration=self.max_duration,
                recording_enabled=self.recording_enabled,
                initial_output_medium=text,
                first_speaker_settings=self.first_speaker_settings,
                voice=None if self.voice == DEFAULT_VOICE else self.voice,
                tool_overrides=None if tools is None else {"add": tools},
            )
            return encode_start_call(request, self.extra_call_fields), query
        if self.enable_greeting_prompt is not None:
            query["enableGreetingPrompt"] = "true" if self.enable_greeting_prompt else "false"
        if prior_call_id is not None:
            query["priorCallId"] = prior_call_id
        request = StartCallRequest(
            system_prompt=self.system_prompt,
            model=self.model,
            voice=None if self.external_voice else self.voice,
            external_voice=self.external_voice,
            temperature=self.temperature,
            language_hint=self.language_hint,
            max_duration=self.max_duration,
            join_timeout=self.join_timeout,
            time_exceeded_message=self.time_exceeded_message,
            initial_messages=history if prior_call_id is None and history else None,
            selected_tools=tools,
            medium=medium,
            first_speaker_settings=self.first_speaker_settings,
            initial_output_medium=text,
            vad_settings=self.vad_settings,
            metadata=self.metadata,
            recording_enabled=self.recording_enabled,
        )
        return encode_start_call(request, self.extra_call_fields), query


def _temperature(name: str, value: Any) -> float:
    return checks.number(name, value, 0.0, 1.0)


def _check_agent_call(agent_id: str, **given: Any) -> None:
    """Refuse what a saved agent's call cannot carry: the agent's template sets it."""
    if not isinstance(agent_id, str) or not agent_id:
        raise ValueError(f"agent_id must be a saved agent's id, got {agent_id!r}")
    defaults = {"model": DEFAULT_MODEL, "system_prompt": DEFAULT_SYSTEM_PROMPT}
    for name, value in given.items():
        if value is not None and value != defaults.get(name):
            raise ValueError(
                f"{name} cannot be sent with agent_id: the saved agent's template sets it"
            )


def history_of(chat_ctx: llm.ChatContext) -> list[InitialMessage]:
    """The conversation so far, for a new call that cannot use ``priorCallId``.

    Every tool result comes right after its call, as the API pairs them: a result without its
    call reads as an answer to nothing. The session's context may hold only the result (the
    framework adds the call to the agent's context, not to ours); the call is then rebuilt from
    the result with arguments ``{}``. A call that never got a result is left out: its
    invocation died with the old call. A result whose tool is unknown is left out too.
    """
    calls = {i.call_id: i for i in chat_ctx.items if isinstance(i, llm.FunctionCall)}
    out: list[InitialMessage] = []
    for item in chat_ctx.items:
        if isinstance(item, llm.ChatMessage) and item.role in ("user", "assistant"):
            text = item.text_content
            if text:
                out.append(
                    InitialMessage(
                        role="MESSAGE_ROLE_USER" if item.role == "user" else "MESSAGE_ROLE_AGENT",
                        text=text,
                    )
                )
        elif isinstance(item, llm.FunctionCallOutput):
            call = calls.get(item.call_id)
            name = call.name if call is not None else item.name
            if not name:
                continue
            arguments = (call.arguments if call is not None else "") or "{}"
            out += [
                InitialMessage(
                    role="MESSAGE_ROLE_TOOL_CALL",
                    text=arguments,
                    invocation_id=item.call_id,
                    tool_name=name,
                ),
                InitialMessage(
                    role="MESSAGE_ROLE_TOOL_RESULT",
                    text=item.output,
                    invocation_id=item.call_id,
                    tool_name=name,
                ),
            ]
    return out
