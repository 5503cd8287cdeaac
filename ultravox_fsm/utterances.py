"""The TURN table's model, part 2: generations, from the first output to the close."""

from __future__ import annotations

from typing import Any

from . import commands as cmd
from . import wire
from .generation import Generation
from .states import CONNECTION, ConnTrigger, Trigger
from .turn_base import TurnBase


class Utterances(TurnBase):
    # --- generations ------------------------------------------------------------------------

    def begin_utterance(self, data: Any) -> None:
        if self.gen is not None:
            self.close_generation(interrupted=False)
        self.suppress_audio = False
        self.stop_user_speaking()
        echoed = frozenset(r.id for r in self.requests if r.echo_ordinal is not None)
        ordinal = data.ordinal if isinstance(data, wire.Transcript) else None
        gen = Generation(
            id=f"{self.item_prefix()}-gen{next(self.gen_seq)}",
            ordinal=ordinal,
            created_at=self.thinking_since if self.thinking_since is not None else self.core.now,
            opened_after_echo=echoed,
            core=self.core,
            requests=self.requests,
        )
        self.thinking_since = None
        self.gen = gen
        self.core.emit(cmd.OpenGeneration(gen_id=gen.id))
        if self.server_state == "speaking":
            self.mark_output(gen)
        gen.consider(final=False)

    def complete_generation(self, data: Any) -> None:
        if self.gen is not None:
            self.close_generation(interrupted=False)

    def start_drain(self, data: Any) -> None:
        if self.gen is not None and self.gen.drain_deadline is None:
            self.gen.drain_deadline = self.core.now + self.core.options.drain_timeout

    def close_generation(self, *, interrupted: bool) -> None:
        gen = self.gen
        assert gen is not None
        gen.consider(final=True)
        self.gen = None
        if gen.ordinal is not None:
            self.last_closed_ordinal = max(self.last_closed_ordinal, gen.ordinal)
        if gen.pushed != gen.text and gen.text.startswith(gen.pushed) and not interrupted:
            self.push_text(gen, gen.text)
        if not interrupted and not gen.muted and not self.conn.proved:
            self.core.fire(CONNECTION, self.conn, ConnTrigger.PROVED)
        self.core.emit(
            cmd.CloseGeneration(
                gen_id=gen.id,
                interrupted=interrupted,
                text=gen.text if not gen.muted else "",
                created_at=gen.created_at,
                first_output_at=gen.first_output_at,
                closed_at=self.core.now,
            )
        )

    def open_with_text(self, data: wire.Transcript) -> None:
        self.begin_utterance(data)
        self.continue_text(data)

    def continue_text(self, data: wire.Transcript) -> None:
        gen = self.gen
        assert gen is not None
        if gen.ordinal is None and data.ordinal is not None:
            gen.ordinal = data.ordinal
        if data.delta is not None:
            text = gen.text + data.delta
        elif data.text is not None:
            text = data.text
        else:
            text = gen.text
        if text:
            self.mark_output(gen)
            self.push_text(gen, text)
        gen.consider(final=False)
        if data.final:
            gen.final_seen = True

    def end_if_final(self, data: wire.Transcript) -> None:
        if data.final:
            self.fire(Trigger.AGENT_FINAL)

    def report_stale(self, data: wire.Transcript) -> None:
        self.core.report(
            "stale_transcript", f"agent transcript for closed or old ordinal {data.ordinal} ignored"
        )

    def push_text(self, gen: Generation, text: str) -> None:
        """Make ``text`` the generation's text, pushing only what was not pushed yet."""
        gen.text = text
        if gen.muted:
            return
        if text.startswith(gen.pushed):
            suffix = text[len(gen.pushed) :]
            if suffix:
                gen.pushed = text
                self.core.emit(cmd.PushText(gen_id=gen.id, text=suffix))
        elif not gen.pushed.startswith(text):  # shorter: cut to what was played, not a rewrite
            self.core.report(
                "text_rewrite", f"agent text was rewritten after {len(gen.pushed)} chars"
            )

    def mark_output(self, gen: Generation) -> None:
        if gen.first_output_at is None:
            gen.first_output_at = self.core.now
