"""Token ids -> (reasoning_content, content) text deltas for SSE streaming, one decoder per choice.

Written by hand: the tokenizer decodes whole sequences, but a stream needs deltas that never split a
multi-byte character, and the think block must go to `delta.reasoning_content`. Decoding uses the
prefix/read offsets of TGI and vLLM's incremental detokenizer (decode a short window, emit only the
new text, hold it back while it ends in an incomplete character). Each channel is stripped as
`l2s.grading.split_reasoning` strips it, and `finish()` reconciles with the final `Generation`, so the
streamed deltas concatenate to exactly the non-streamed `reasoning_content` and `content` whenever the
completion is well formed (`<think>…</think>` first, or no think block at all).
"""

from __future__ import annotations

from collections.abc import Sequence

from l2s.engines.base import Generation
from l2s.engines.completion import ThinkMarkers, first_stop
from l2s.grading import THINK_CLOSE, THINK_OPEN


class _Channel:
    """Text of one channel (reasoning or content), stripped at both ends as it streams."""

    def __init__(self, hold: int = 0, strip: bool = True) -> None:
        self.emitted = ""
        self.pending = ""  # whitespace (or a possible stop-string prefix) not yet safe to send
        self.hold, self.strip = hold, strip

    def push(self, text: str) -> str:
        self.pending += text
        if self.strip and not self.emitted:
            self.pending = self.pending.lstrip()
        body = self.pending.rstrip() if self.strip else self.pending
        safe = len(body) - self.hold if self.hold else len(body)
        if safe <= 0:
            return ""
        out, self.pending = self.pending[:safe], self.pending[safe:]
        self.emitted += out
        return out

    def finish(self, final: str) -> str:
        """The rest of `final` when what was sent is its prefix (it is for well-formed output)."""
        if final.startswith(self.emitted):
            out = final[len(self.emitted) :]
            self.emitted = final
            return out
        return ""


class StreamDecoder:
    """Feeds one choice's token ids, returns (reasoning_delta, content_delta) per token.

    With `split=False` (text completions) everything is content, think markers included, unstripped:
    the raw text a completion returns.

    >>> from l2s.embedded.tokenizer import build_tokenizer
    >>> tok = build_tokenizer(["<think>\\n1 + 2 = 3\\n</think>\\nAnswer: 3"] * 4)
    >>> ids = tok.encode("<think>\\n1 + 2 = 3\\n</think>\\nAnswer: 3") + [tok.eos_token_id]
    >>> dec = StreamDecoder(tok, ThinkMarkers.of(tok), {tok.eos_token_id})
    >>> deltas = [dec.feed(t) for t in ids]
    >>> "".join(r for r, _ in deltas), "".join(c for _, c in deltas)
    ('1 + 2 = 3', 'Answer: 3')
    """

    def __init__(
        self,
        tokenizer,
        markers: ThinkMarkers,
        eos_ids: set[int],
        think_opened: bool = False,
        stops: Sequence[str] | None = None,
        split: bool = True,
    ) -> None:
        self.tokenizer, self.eos_ids = tokenizer, eos_ids
        self.open_id = markers.open_ids[0] if len(markers.open_ids) == 1 else None
        self.close_id = markers.close_ids[0] if len(markers.close_ids) == 1 else None
        self.stops = [s for s in stops or [] if s]
        self.longest_stop = max((len(s) for s in self.stops), default=0)
        self.raw, self.stopped = "", False  # all text so far, markers included (for stop strings)
        hold = max(self.longest_stop - 1, 0)  # a stop string may be completed by the next token
        self.reasoning, self.content = _Channel(hold), _Channel(hold, strip=split)
        # undecided: before the first visible token we do not know whether a think block opens.
        self.state = "reasoning" if think_opened else "undecided"
        if not split:
            self.state = "raw"
        self.ids: list[int] = []
        self.prefix, self.read = 0, 0

    def _text(self, tok: int) -> str:
        """Incremental decode of the current segment (the ids since the last think marker)."""
        self.ids.append(tok)
        before = self.tokenizer.decode(self.ids[self.prefix : self.read], skip_special_tokens=True)
        after = self.tokenizer.decode(self.ids[self.prefix :], skip_special_tokens=True)
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.prefix, self.read = self.read, len(self.ids)
            return after[len(before) :]
        return ""

    def _flush(self) -> str:
        """The segment's text not sent yet, an incomplete character included (a marker ends the segment)."""
        rest = self.tokenizer.decode(self.ids[self.prefix :], skip_special_tokens=True)
        sent = self.tokenizer.decode(self.ids[self.prefix : self.read], skip_special_tokens=True)
        self.ids, self.prefix, self.read = [], 0, 0
        return rest[len(sent) :]

    def feed(self, tok: int) -> tuple[str, str]:
        if tok in self.eos_ids or self.stopped:
            return "", ""
        marker = {self.open_id: THINK_OPEN, self.close_id: THINK_CLOSE}.get(tok)
        if not marker:
            return self._route(self._text(tok))
        r, c = self._route(self._flush())
        # decode_completion keeps a marker's text; a marker at a boundary switches channel instead
        if (tok == self.open_id and self.state == "undecided") or (
            tok == self.close_id and self.state in ("reasoning", "undecided")  # nothing visible before it
        ):
            self._cut_at_stop(marker)
            self.state = "reasoning" if tok == self.open_id else "content"
            return r, c
        r2, c2 = self._route(marker)
        return r + r2, c + c2

    def _route(self, text: str) -> tuple[str, str]:
        """Send `text` to the channel the completion is in."""
        text = self._cut_at_stop(text)
        if not text:
            return "", ""
        if self.state == "raw":
            return "", self.content.push(text)
        if self.state == "undecided":
            if not text.strip():
                return "", ""
            self.state = "content"
        if self.state == "reasoning":
            return self.reasoning.push(text), ""
        return "", self.content.push(text)

    def _cut_at_stop(self, text: str) -> str:
        """The part of `text` before a stop string; text held back by a channel is cut there too."""
        if not self.stops:
            return text
        before = len(self.raw)
        self.raw += text
        hit = first_stop(self.raw[max(0, before - self.longest_stop) :], self.stops)
        if hit < 0:
            return text
        self.stopped = True
        keep = max(0, before - self.longest_stop) + hit - before  # < 0: the stop began in held text
        if keep < 0:
            channel = self.reasoning if self.state == "reasoning" else self.content
            channel.pending = channel.pending[: max(0, len(channel.pending) + keep)]
            return ""
        return text[:keep]

    def finish(self, gen: Generation) -> tuple[str, str]:
        """Remaining (reasoning, content) text so the stream adds up to the final generation."""
        if self.state == "raw":
            return "", self.content.finish(gen.text)
        return self.reasoning.finish(gen.reasoning), self.content.finish(gen.content)
