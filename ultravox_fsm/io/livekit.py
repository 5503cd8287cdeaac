"""LiveKit Agents adapter: the drop-in `RealtimeModel`; its sessions are `session.RealtimeSession`.

The model only holds options (checked at construction, `options.py`); each session copies them
and owns its own connection (D13).
"""

from __future__ import annotations

from typing import Any, Literal

import aiohttp
from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, llm
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import is_given

from .effects import RawEvents
from .options import DEFAULT_MODEL, DEFAULT_SYSTEM_PROMPT, DEFAULT_VOICE, Options
from .session import RealtimeSession

__all__ = ["RawEvents", "RealtimeModel", "RealtimeSession"]


class RealtimeModel(llm.RealtimeModel):
    """Ultravox Realtime for LiveKit Agents; takes every parameter of livekit-plugins-ultravox.

    Differences from the seed, each deliberate: ``enable_greeting_prompt`` left unset sends
    nothing (the server's default applies); ``first_speaker`` becomes ``firstSpeakerSettings``
    (``firstSpeaker`` is deprecated); text output is requested at call creation. Every option
    is checked here, not by a 400 mid-session. Durations (``max_duration``, ``join_timeout``,
    those in ``vad_settings`` and ``first_speaker_settings``) take seconds (``1.5``) or strings
    (``"1.5s"``, ``"30m"``, ``"1h30m"``) and are sent in the API's ``"1.5s"`` form: converting
    an unambiguous value is friendlier than refusing it.

    Ours: ``agent_id`` calls a saved agent (``template_context`` fills its template; the prompt,
    model and voice settings are the agent's, so those options are refused with it);
    ``server_tools`` adds tools Ultravox runs (a name such as ``"hangUp"``, or a raw
    ``SelectedTool`` dict: ``toolId``, an HTTP ``temporaryTool``) to the function tools;
    ``throttle`` names a call throttle; ``extra_call_fields`` is merged deeply into the body
    (tool lists appended) and a conflicting value is refused. ``transport="lean"`` opens the
    call's socket with the library's own minimal WebSocket client (`lean_socket`), which hands
    a burst of frames over in one go; aiohttp's stays the default.
    """

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        voice: str = DEFAULT_VOICE,
        external_voice: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
        api_key: str | None = None,
        base_url: str | None = None,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        output_medium: NotGivenOr[Literal["text", "voice"]] = NOT_GIVEN,
        input_sample_rate: int = 16000,
        output_sample_rate: int = 24000,
        temperature: NotGivenOr[float] = NOT_GIVEN,
        language_hint: NotGivenOr[str] = NOT_GIVEN,
        max_duration: NotGivenOr[str | float] = NOT_GIVEN,
        join_timeout: NotGivenOr[str | float] = NOT_GIVEN,
        time_exceeded_message: NotGivenOr[str] = NOT_GIVEN,
        enable_greeting_prompt: NotGivenOr[bool] = NOT_GIVEN,
        first_speaker: NotGivenOr[str] = "FIRST_SPEAKER_USER",
        http_session: aiohttp.ClientSession | None = None,
        first_speaker_settings: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
        vad_settings: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
        metadata: NotGivenOr[dict[str, str]] = NOT_GIVEN,
        recording_enabled: NotGivenOr[bool] = NOT_GIVEN,
        agent_id: NotGivenOr[str] = NOT_GIVEN,
        template_context: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
        throttle: NotGivenOr[str] = NOT_GIVEN,
        server_tools: NotGivenOr[list[str | dict[str, Any]]] = NOT_GIVEN,
        extra_call_fields: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
        client_buffer_size_ms: int = 30000,
        reply_timeout: float = 15.0,
        tool_timeout: NotGivenOr[float] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        audio_buffer_ms: int = 500,
        say_interruptible: bool = True,
        user_speech_events: bool = False,
        trace_dir: NotGivenOr[str] = NOT_GIVEN,
        tool_settings: NotGivenOr[dict[str, dict[str, Any]]] = NOT_GIVEN,
        transport: Literal["aiohttp", "lean"] = "aiohttp",
    ) -> None:
        def given(value: NotGivenOr[Any]) -> Any:
            return value if is_given(value) else None

        self._opts = Options.from_kwargs(
            model=model,
            voice=voice,
            external_voice=given(external_voice),
            api_key=api_key,
            base_url=base_url,
            system_prompt=system_prompt,
            output_medium=output_medium if is_given(output_medium) else "voice",
            input_sample_rate=input_sample_rate,
            output_sample_rate=output_sample_rate,
            temperature=given(temperature),
            language_hint=given(language_hint),
            max_duration=given(max_duration),
            join_timeout=given(join_timeout),
            time_exceeded_message=given(time_exceeded_message),
            enable_greeting_prompt=given(enable_greeting_prompt),
            first_speaker=given(first_speaker),
            first_speaker_settings=given(first_speaker_settings),
            vad_settings=given(vad_settings),
            metadata=given(metadata),
            recording_enabled=given(recording_enabled),
            agent_id=given(agent_id),
            template_context=given(template_context),
            throttle=given(throttle),
            server_tools=given(server_tools),
            extra_call_fields=given(extra_call_fields),
            client_buffer_size_ms=client_buffer_size_ms,
            reply_timeout=reply_timeout,
            tool_timeout=given(tool_timeout),
            conn_options=conn_options,
            audio_buffer_ms=audio_buffer_ms,
            say_interruptible=say_interruptible,
            user_speech_events=user_speech_events,
            trace_dir=given(trace_dir),
            tool_settings=given(tool_settings),
            transport=transport,
        )
        super().__init__(
            capabilities=llm.RealtimeCapabilities(
                message_truncation=False,
                turn_detection=True,
                user_transcription=True,
                auto_tool_reply_generation=True,
                audio_output=self._opts.output_medium == "voice",
                manual_function_calls=False,
                supports_say=True,
            )
        )
        self._http_session = http_session
        self._label = f"ultravox-{model}"

    def __repr__(self) -> str:
        return f"RealtimeModel(model={self._opts.model!r}, base_url={self._opts.base_url!r})"

    @property
    def model(self) -> str:
        return self._opts.model

    @property
    def provider(self) -> str:
        return "ultravox"

    def session(self, *, turn_detection_disabled: bool = False) -> RealtimeSession:
        return RealtimeSession(self)

    def update_options(
        self, *, output_medium: NotGivenOr[Literal["text", "voice"]] = NOT_GIVEN
    ) -> None:
        """Default output medium for sessions created from now on."""
        if is_given(output_medium):
            if output_medium not in ("text", "voice"):
                raise ValueError(f"output_medium must be 'text' or 'voice', got {output_medium!r}")
            self._opts.output_medium = output_medium
            self._capabilities.audio_output = output_medium == "voice"

    async def aclose(self) -> None:
        """The model owns nothing: sessions close their own connections (D13)."""
