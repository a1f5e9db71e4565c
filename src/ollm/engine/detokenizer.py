"""Incremental detokenization: UTF-8 safe deltas and stop strings that are never emitted.

Tokens arrive one at a time as raw bytes. A multi-byte character may be split across
tokens, so bytes are decoded incrementally and an unfinished character waits for the next
token. Text that could still grow into a stop string is held back until it cannot.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence


class Detokenizer:
    """Turns a stream of token bytes into text deltas, cutting at the first stop string."""

    def __init__(self, stop: Sequence[str] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = tuple(s for s in stop if s)
        self._held = ""
        self.stopped = False
        self.matched_stop: str | None = None  # which stop string ended the text, once stopped
        self.text = ""

    def push(self, piece: bytes) -> str:
        """Feed one token's bytes; returns the text that is now safe to emit."""
        if self.stopped:
            return ""
        return self._release(self._decoder.decode(piece))

    def flush(self) -> str:
        """End of stream: release everything held. The bytes of a character the stream
        ended inside (a token limit that splits an emoji) are dropped: a reply never ends
        in U+FFFD for a character the model did not get to finish."""
        if self.stopped:
            return ""
        self._decoder.reset()  # the unfinished character's bytes
        tail = ""
        tail += self._held
        self.text += self._held
        self._held = ""
        return tail

    def _release(self, new_text: str) -> str:
        pending = self._held + new_text
        cut, matched = self._first_stop(pending)
        if cut is not None:
            self.stopped = True
            self.matched_stop = matched
            emitted, self._held = pending[:cut], ""
        else:
            keep = self._longest_stop_prefix_suffix(pending)
            emitted, self._held = pending[: len(pending) - keep], pending[len(pending) - keep :]
        self.text += emitted
        return emitted

    def _first_stop(self, text: str) -> tuple[int | None, str | None]:
        """Where the earliest stop string starts in ``text``, and which one it is."""
        found = [(i, s) for s, i in ((s, text.find(s)) for s in self._stop) if i >= 0]
        if not found:
            return None, None
        return min(found, key=lambda hit: hit[0])

    def _longest_stop_prefix_suffix(self, text: str) -> int:
        """Length of the longest end of ``text`` that is a proper start of some stop string."""
        best = 0
        for stop in self._stop:
            for length in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:length]):
                    best = length
                    break
        return best
