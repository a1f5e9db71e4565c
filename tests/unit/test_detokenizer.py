"""The detokenizer never splits a UTF-8 character and never emits a stop string."""

from ollm.engine.detokenizer import Detokenizer


def feed(detok: Detokenizer, pieces: list[bytes]) -> list[str]:
    return [detok.push(piece) for piece in pieces]


def test_multibyte_character_split_across_tokens_waits_for_its_last_byte():
    euro = "€".encode()  # three bytes
    detok = Detokenizer()
    deltas = feed(detok, [b"a", euro[:1], euro[1:2], euro[2:], b"b"])
    assert deltas == ["a", "", "", "€", "b"]
    assert detok.flush() == ""


def test_every_delta_is_valid_utf8_for_emoji_byte_by_byte():
    text = "héllo 👋🏽 wörld"
    detok = Detokenizer()
    deltas = feed(detok, [bytes([b]) for b in text.encode()])
    for delta in deltas:
        delta.encode("utf-8")  # would raise on a lone surrogate
        assert "\ufffd" not in delta
    assert "".join(deltas) + detok.flush() == text


def test_unfinished_character_at_end_is_dropped():
    detok = Detokenizer()
    assert detok.push(b"ok " + "€".encode()[:2]) == "ok "
    assert detok.flush() == ""
    assert detok.text == "ok "


def test_an_emoji_cut_by_the_token_limit_leaves_no_replacement_char():
    emoji = "👍".encode()  # four bytes, fed one token each
    detok = Detokenizer(stop=["</s>"])
    deltas = [detok.push(b"Nice ")] + [detok.push(emoji[i : i + 1]) for i in range(3)]
    assert "".join(deltas) + detok.flush() == "Nice "
    assert "\ufffd" not in detok.text


def test_invalid_bytes_inside_the_stream_still_show():
    detok = Detokenizer()
    text = detok.push(b"a\xffb") + detok.flush()
    assert text == "a\ufffdb"  # only an unfinished tail is dropped, not bad bytes


def test_stop_string_is_cut_and_never_emitted():
    detok = Detokenizer(stop=["END"])
    deltas = feed(detok, [b"one ", b"two E", b"N", b"D three"])
    assert "".join(deltas) == "one two "
    assert detok.stopped
    assert detok.flush() == ""
    assert detok.text == "one two "


def test_text_resembling_a_stop_prefix_is_released_when_it_diverges():
    detok = Detokenizer(stop=["</s>"])
    assert detok.push(b"a</") == "a"
    assert detok.push(b"b>") == "</b>"
    assert not detok.stopped


def test_held_text_is_released_at_end_of_stream():
    detok = Detokenizer(stop=["STOP"])
    assert detok.push(b"xST") == "x"
    assert detok.flush() == "ST"


def test_earliest_of_several_stop_strings_wins():
    detok = Detokenizer(stop=["bb", "a"])
    assert detok.push(b"xbbya") == "x"
    assert detok.stopped


def test_stop_string_spanning_a_multibyte_character():
    detok = Detokenizer(stop=["é!"])
    e_acute = "é".encode()
    deltas = feed(detok, [b"caf", e_acute[:1], e_acute[1:], b"! more"])
    assert "".join(deltas) == "caf"
    assert detok.stopped
