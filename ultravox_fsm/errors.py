"""Typed errors, split by who broke the rules (the h11 way).

`LocalProtocolError`: our caller asked for something the current state forbids (a tool result
for an invocation that is not live, a request on a closed session). `RemoteProtocolError`: the
server sent something we cannot make sense of (malformed JSON, a wrong field type). Neither ever
changes the core's state: the caller logs it and the session keeps working.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of the library's protocol errors; never raised itself."""

    def __init__(self, message: str) -> None:
        if type(self) is ProtocolError:
            raise TypeError("raise LocalProtocolError or RemoteProtocolError instead")
        super().__init__(message)


class LocalProtocolError(ProtocolError):
    """The local side (our caller) broke the protocol; nothing was sent."""


class RemoteProtocolError(ProtocolError):
    """The server sent something invalid; it was not applied."""
