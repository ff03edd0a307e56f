"""Stop strings (OpenAI `stop`): the answer ends before the first occurrence of any of them,
which is not part of the output.

Workers stop on token ids only; a string can span tokens and a token can hold more than the
string, so the frontend matches text. While streaming, the tail of the text that could still
become a stop string is held back until the next delta shows it does not (it is never sent and
then taken back).
"""

from __future__ import annotations

from collections.abc import Sequence


class StopStringMatcher:
    """Mutated by `feed` and `flush`; one per request."""

    def __init__(self, stop_strings: Sequence[str]) -> None:
        assert all(stop_strings), "stop strings are non-empty"
        self.stop_strings = tuple(stop_strings)
        self._held = ""  # text not emitted yet: a prefix of some stop string
        self.is_stopped = False

    def feed(self, delta: str) -> str:
        """The text that can be emitted now. Sets `is_stopped` when a stop string completes:
        the text before it is returned and everything after it is dropped."""
        if self.is_stopped:
            return ""
        if not self.stop_strings:
            return delta
        text = self._held + delta
        hits = [index for stop in self.stop_strings if (index := text.find(stop)) >= 0]
        if hits:
            self.is_stopped = True
            self._held = ""
            return text[:min(hits)]
        num_held = max(_num_prefix_chars_at_end(text, stop) for stop in self.stop_strings)
        self._held = text[len(text) - num_held:] if num_held else ""
        return text[:len(text) - num_held]

    def flush(self) -> str:
        """At the end of the answer: what was held back is answer after all."""
        held, self._held = self._held, ""
        return "" if self.is_stopped else held


def _num_prefix_chars_at_end(text: str, stop: str) -> int:
    """Length of the longest proper prefix of `stop` that `text` ends with."""
    for length in range(min(len(stop) - 1, len(text)), 0, -1):
        if text.endswith(stop[:length]):
            return length
    return 0
