"""StreamDecoder: streamed deltas add up to the engine's own `Generation` (make_generation), token by token.

Property-based over token sequences of the real pico tokenizer (byte-level BPE: sequences that split
multi-byte characters included).
"""

from __future__ import annotations

import pytest

pytest.importorskip("hypothesis")  # absent from the vLLM venv, which collects every test module

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from l2s.engines.completion import ThinkMarkers, make_generation
from l2s.server.streaming import StreamDecoder


@pytest.fixture(scope="module")
def tok(pico_tokenizer):
    return pico_tokenizer


def _stream(tok, ids, think_opened=False, stops=None, split=True):
    markers = ThinkMarkers.of(tok)
    eos = {tok.eos_token_id}
    dec = StreamDecoder(tok, markers, eos, think_opened, stops, split=split)
    r = c = ""
    for t in ids:
        dr, dc = dec.feed(t)
        r, c = r + dr, c + dc
    gen = make_generation(tok, ids, eos_ids=eos, markers=markers, think_opened=think_opened, stops=stops)
    fr, fc = dec.finish(gen)
    return r + fr, c + fc, gen


def _plain(tok):
    special = set(tok.all_special_ids)
    return st.lists(st.integers(0, len(tok) - 1).filter(lambda i: i not in special), max_size=25)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_well_formed_completions_stream_exactly(tok, data):
    plain = _plain(tok)
    open_, close = tok.convert_tokens_to_ids(["<think>", "</think>"])
    shape = data.draw(st.sampled_from(["think", "no-think", "opened", "unclosed"]))
    reasoning, answer = data.draw(plain), data.draw(plain)
    ids = {
        "think": [open_, *reasoning, close, *answer],
        "no-think": answer,
        "opened": [*reasoning, close, *answer],
        "unclosed": [open_, *reasoning],
    }[shape]
    if data.draw(st.booleans()):
        ids = [*ids, tok.eos_token_id]
    stops = data.draw(st.sampled_from([None, ["7"], ["er", "wait"]]))
    r, c, gen = _stream(tok, ids, think_opened=shape == "opened", stops=stops)
    assert (r, c) == (gen.reasoning, gen.content)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_raw_text_streams_exactly_even_with_stop_strings(tok, data):
    any_ids = st.lists(st.integers(0, len(tok) - 1), max_size=30)
    ids = data.draw(any_ids)
    stops = data.draw(st.sampled_from([None, ["Answer"], ["7", "</think>"]]))
    gen = make_generation(
        tok, ids, eos_ids={tok.eos_token_id}, markers=ThinkMarkers.of(tok), think_opened=False, stops=stops
    )
    _, c, _ = _stream(tok, gen.token_ids, stops=stops, split=False)
    assert c == gen.text


def test_stop_string_is_never_streamed(tok):
    ids = tok.encode("12 + 30 = 42\nwait, check: 42 - 30 = 12") + [tok.eos_token_id]
    r, c, gen = _stream(tok, ids, stops=["wait"])
    assert "wait" not in c and c == gen.content == "12 + 30 = 42"


def test_multibyte_characters_are_never_split(tok):
    ids = tok.encode("héllo wörld ✓")
    markers = ThinkMarkers.of(tok)
    dec = StreamDecoder(tok, markers, {tok.eos_token_id})
    pieces = [dec.feed(t)[1] for t in ids]
    assert "".join(pieces) == "héllo wörld ✓"
    assert not any("\ufffd" in p for p in pieces)
