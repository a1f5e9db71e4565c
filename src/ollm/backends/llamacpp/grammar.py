"""The GBNF grammar a sampler decodes under, from a :class:`~ollm.sampling.JsonOutput`.

A plain JSON output is a grammar from the first token on. A tagged one (tool calls with
``tool_choice`` "auto") is *lazy*: llama.cpp lets the model write freely until a trigger,
then constrains every token after it, so a call once begun always parses and matches its
tool's schema, while a prose answer is never touched. Two triggers:

* the call's opening tag, when it is one token (``<tool_call>`` in Qwen's vocabulary):
  llama.cpp hands the grammar exactly that token's text;
* a bare JSON call, ``{"name": "<a declared tool>"``, anywhere in the reply (small models
  write them so, often in a Markdown fence): a regular expression over the reply so far.
  llama.cpp hands the grammar the text from the expression's first group to the end of
  the reply, and aborts the process if that text does not fit the grammar, so the
  expression only matches a reply that *ends* right after the name (or its comma): no
  unchecked text follows, and a reply whose pieces do not end at such a point is never
  constrained (its call is parsed as written, as without a grammar).

A model whose opening tag is not one token gets only the second trigger.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ollm.backends.llamacpp.native import json_grammar
from ollm.sampling import JsonOutput, TaggedCalls

# json_schema_to_gbnf allows at most one space between tokens; a model writing a call in
# its own format puts newlines and indentation there too (llama.cpp's server allows this).
_TIGHT_SPACE = 'space ::= " "?'
_LOOSE_SPACE = 'space ::= | " " | "\\n" [ \\t]{0,20}'
_SPACE_RE = r"(?: |\n[ \t]{0,20})?"  # exactly what _LOOSE_SPACE admits
_ROOT = re.compile(r"^root ::=", re.MULTILINE)
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


@dataclass(frozen=True, slots=True)
class OutputGrammar:
    """A grammar and, when it is lazy, what starts it."""

    gbnf: str
    trigger_tokens: tuple[int, ...] = ()
    trigger_patterns: tuple[str, ...] = ()

    @property
    def lazy(self) -> bool:
        return bool(self.trigger_tokens or self.trigger_patterns)


def output_grammar(
    output: JsonOutput, tokenize: Callable[[str], Sequence[int]]
) -> OutputGrammar | None:
    """The grammar for ``output``; None when nothing can trigger a lazy one. ``tokenize``
    parses special tokens."""
    gbnf = json_grammar(output.schema)
    tagged = output.tagged
    if tagged is None:
        return OutputGrammar(gbnf)
    opener = list(tokenize(tagged.open))
    tokens = (opener[0],) if len(opener) == 1 else ()
    pattern = bare_call_pattern(tagged.names)
    patterns = (pattern,) if pattern else ()
    if not tokens and not patterns:
        return None
    call = _ROOT.sub("tc-json ::=", gbnf.replace(_TIGHT_SPACE, _LOOSE_SPACE), count=1)
    return OutputGrammar(
        f"{_tagged_root(tagged)}\n{call}", trigger_tokens=tokens, trigger_patterns=patterns
    )


def bare_call_pattern(names: Sequence[str]) -> str | None:
    """An ECMAScript expression matching a whole reply that is the start of a bare call to
    one of ``names``, ending where the call grammar can go on: ``{"name": "x"`` and
    optionally the comma. None when a name has characters kept out of expressions."""
    if not names or not all(_PLAIN_NAME.fullmatch(name) for name in names):
        return None
    alternatives = "|".join(re.sub(r"([.\-])", r"\\\1", name) for name in names)
    s = _SPACE_RE
    # The leading any-text and the trailing $ make this mean the same whether llama.cpp
    # matches it against the whole reply or searches it: it matches only when the reply
    # ends right after the name (or its comma), so nothing unchecked follows.
    return rf'[\s\S]*?(\{{{s}"name"{s}:{s}"(?:{alternatives})"(?:{s},{s})?)$'


def _tagged_root(tagged: TaggedCalls) -> str:
    repeat = " (tc-ws tc-call)*" if tagged.many else ""
    opening, closing = json.dumps(tagged.open), json.dumps(tagged.close)
    return "\n".join(
        [
            # A bare call may sit in a Markdown fence the model opened: let it close it.
            f"root ::= tc-call{repeat} tc-ws | tc-json tc-ws tc-fence?",
            'tc-fence ::= "```" tc-ws',
            f"tc-call ::= {opening} tc-ws tc-json tc-ws {closing}",
            "tc-ws ::= [ \\t\\n]{0,20}",
        ]
    )
