"""What a call is created from: the model's options, checked once, and the call-creation body.

`Options.from_kwargs` takes every constructor parameter of livekit-plugins-ultravox (plus ours)
and refuses what the API would refuse later, with the option's name in the message: a bad
option must fail the constructor, not end a session mid-call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from livekit.agents import APIConnectOptions, llm

from ..call import (
    CallMedium,
    InitialMessage,
    ServerWebSocketMedium,
    StartCallRequest,
    encode_start_call,
    to_duration,
)
from ..runner import EngineOptions

DEFAULT_BASE_URL = "https://api.ultravox.ai/api"
DEFAULT_MODEL = "fixie-ai/ultravox"
DEFAULT_VOICE = "Mark"

FIRST_SPEAKER: dict[str, dict[str, Any] | None] = {
    "FIRST_SPEAKER_USER": {"user": {}},
    "FIRST_SPEAKER_AGENT": {"agent": {}},
    "FIRST_SPEAKER_UNSPECIFIED": None,
}


def check_json(name: str, value: Any) -> None:
    """Refuse a value the call body cannot carry, naming the option (and the bad part)."""
    try:
        msgspec.json.encode(value)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise ValueError(f"{name} cannot be sent to Ultravox as JSON: {exc}") from None


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
    time_exceeded_message: str | None
    enable_greeting_prompt: bool | None
    first_speaker_settings: dict[str, Any] | None
    vad_settings: dict[str, Any] | None
    metadata: dict[str, str] | None
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
        time_exceeded_message: str | None,
        enable_greeting_prompt: bool | None,
        first_speaker: str | None,
        first_speaker_settings: dict[str, Any] | None,
        vad_settings: dict[str, Any] | None,
        metadata: dict[str, str] | None,
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
            first_speaker_settings
            if first_speaker_settings is not None
            else FIRST_SPEAKER.get(first_speaker)
            if first_speaker is not None
            else None
        )
        for name, value in (
            ("external_voice", external_voice),
            ("first_speaker_settings", speaker),
            ("vad_settings", vad_settings),
            ("metadata", metadata),
            ("extra_call_fields", extra_call_fields),
            ("tool_settings", tool_settings),
        ):
            check_json(name, value)
        return cls(
            model=model,
            voice=voice,
            external_voice=external_voice,
            api_key=key,
            base_url=base_url or os.environ.get("ULTRAVOX_BASE_URL") or DEFAULT_BASE_URL,
            system_prompt=system_prompt,
            output_medium="text" if output_medium == "text" else "voice",
            input_sample_rate=input_sample_rate,
            output_sample_rate=output_sample_rate,
            temperature=temperature,
            language_hint=language_hint,
            max_duration=None if max_duration is None else to_duration(max_duration),
            time_exceeded_message=time_exceeded_message,
            enable_greeting_prompt=enable_greeting_prompt,
            first_speaker_settings=speaker,
            vad_settings=vad_settings,
            metadata=metadata,
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
        )

    def call_body(
        self,
        tool_defs: list[dict[str, Any]],
        prior_call_id: str | None,
        history: list[InitialMessage] | None,
    ) -> tuple[bytes, dict[str, str]]:
        """The body and query of ``POST /calls``: continue ``prior_call_id``, or start over
        with ``history`` as ``initialMessages``."""
        query: dict[str, str] = {}
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
            time_exceeded_message=self.time_exceeded_message,
            initial_messages=history if prior_call_id is None and history else None,
            selected_tools=tool_defs or None,
            medium=CallMedium(
                server_web_socket=ServerWebSocketMedium(
                    input_sample_rate=self.input_sample_rate,
                    output_sample_rate=self.output_sample_rate,
                    client_buffer_size_ms=self.client_buffer_size_ms,
                    data_messages=self.data_messages or None,
                )
            ),
            first_speaker_settings=self.first_speaker_settings,
            initial_output_medium="MESSAGE_MEDIUM_TEXT" if self.output_medium == "text" else None,
            vad_settings=self.vad_settings,
            metadata=self.metadata,
        )
        return encode_start_call(request, self.extra_call_fields), query


def history_of(chat_ctx: llm.ChatContext) -> list[InitialMessage]:
    """The conversation so far, for a new call that cannot use ``priorCallId``."""
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
        elif isinstance(item, (llm.FunctionCall, llm.FunctionCallOutput)):
            call = isinstance(item, llm.FunctionCall)
            out.append(
                InitialMessage(
                    role="MESSAGE_ROLE_TOOL_CALL" if call else "MESSAGE_ROLE_TOOL_RESULT",
                    text=item.arguments if isinstance(item, llm.FunctionCall) else item.output,
                    invocation_id=item.call_id,
                    tool_name=item.name or None,
                )
            )
    return out
