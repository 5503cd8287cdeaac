"""The TURN table's model, part 3: what is asked of the agent and by it (tools, requests,
context, control messages)."""

from __future__ import annotations

from typing import Literal

from . import commands as cmd
from . import events as ev
from . import wire
from .request import DEFAULT_REPLY_PROMPT, Request
from .states import ReqTrigger
from .utterances import Utterances


class Asks(Utterances):
    # --- tools ------------------------------------------------------------------------------

    def register_invocation(self, data: wire.ClientToolInvocation) -> None:
        self.invocations[data.invocation_id] = self.core.now + self.core.options.tool_timeout
        if self.gen is None:
            self.begin_utterance(data)
        gen = self.gen
        assert gen is not None
        self.mark_output(gen)
        if not gen.muted:
            self.core.emit(
                cmd.PushFunctionCall(
                    gen_id=gen.id,
                    call_id=data.invocation_id,
                    name=data.tool_name,
                    arguments=bytes(data.parameters).decode(errors="replace"),
                )
            )
        if gen.final_seen or not gen.text:
            self.close_generation(interrupted=False)
        else:
            # The server waits for the result; LiveKit runs the tool only once the generation
            # ends. If the utterance's final never comes, the drain deadline ends it.
            self.start_drain(data)

    def answer_unknown_tool(self, data: wire.ClientToolInvocation) -> None:
        self.core.report("unknown_tool", f"the server invoked unknown tool {data.tool_name!r}")
        self.send(
            wire.ClientToolResult(
                invocation_id=data.invocation_id,
                error_type="undefined",
                error_message=f"no tool named {data.tool_name!r}",
            )
        )

    def send_tool_result(self, data: ev.ToolResult) -> None:
        del self.invocations[data.invocation_id]
        error = data.error_message is not None or data.error_type is not None
        self.send(
            wire.ClientToolResult(
                invocation_id=data.invocation_id,
                result=None if error else (data.result or ""),
                agent_reaction="speaks" if data.reply_required else "listens",
                error_type=(data.error_type or "implementation-error") if error else None,
                error_message=data.error_message if error else None,
            )
        )

    def expire_tool(self, data: str) -> None:
        del self.invocations[data]
        self.core.report("tool_expired", f"tool invocation {data} was not answered in time")

    # --- requests and context ---------------------------------------------------------------

    def queue_request(self, data: ev.ReplyRequested | ev.SayRequested) -> None:
        words = False
        message: wire.ClientMessage
        kind: Literal["reply", "say"]
        if isinstance(data, ev.SayRequested):
            self.flush_context()
            kind = "say"
            message = wire.ForcedAgentMessage(
                content=data.text,
                tool_calls=data.tool_calls,
                known_tool_results=data.known_tool_results,
                uninterruptible=not data.interruptible,
            )
        else:
            kind = "reply"
            text = data.instructions and f"<instruction>{data.instructions}</instruction>"
            if text is None:
                users = [i for i, (role, _) in enumerate(self.held_context) if role == "user"]
                words = bool(users)
                text = self.held_context.pop(users[-1])[1] if users else DEFAULT_REPLY_PROMPT
            self.flush_context()
            message = wire.UserTextMessage(text=text, urgency="soon")
        request = Request(data.request_id, kind, message, self.core, self.outgoing, words=words)
        self.requests.add(request)
        if self.live:
            self.requests.fire(request, ReqTrigger.SEND)
        else:
            self._evict(self.outgoing.hold(message, request.id))

    def cancel_request(self, data: str) -> None:
        request = self.requests.get(data)
        if request is not None:
            self.requests.fire(request, ReqTrigger.CANCEL)

    def add_context(self, data: ev.ContextAdded | ev.ContextFlush) -> None:
        if isinstance(data, ev.ContextAdded):
            self.held_context.append((data.role, data.text))
        else:
            self.flush_context()

    def flush_context(self) -> None:
        for role, text in self.held_context:
            body = text if role == "user" else f"<instruction>{text}</instruction>"
            self.send(wire.UserTextMessage(text=body, urgency="later", defer_response=True))
        self.held_context.clear()

    def send_control(self, data: wire.ClientMessage) -> None:
        self.send(data)
