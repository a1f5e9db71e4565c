"""Tool-call validity benchmark: how often the bundled ``qwen2.5-coder:0.5b`` makes a valid
call, with and without the grammar.

Twenty fixed prompts, each of which should be answered by calling one of four declared tools.
Each prompt is sent three times through ``/v1/chat/completions`` at temperature 0: with
``tool_choice: "auto"`` and the tool grammar off (``OLLM_TOOL_GRAMMAR=off``: free decoding;
ollm only parses what the model wrote, in whatever syntax, the baseline), with ``"auto"``
and the lazy grammar (the default: free until the model begins a call, then constrained),
and with ``tool_choice: "required"`` (decoding under the grammar built from the tools'
JSON schemas from the first token). A reply counts as a *valid call* when it has at least
one call, every call names a declared tool and its arguments validate against that tool's
schema; as the *right tool* when, on top, the first call is the tool the prompt asks for.
The baseline is the same model and server without the grammar, in the same run.

    .venv/bin/python -m benchmarks.tool_calls
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonschema

from benchmarks.servers import ollm_server

MODEL = "qwen2.5-coder:0.5b"
MAX_TOKENS = 120


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


TOOLS = [
    _tool(
        "get_weather",
        "Get the current weather in a city.",
        {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        ["city"],
    ),
    _tool(
        "add",
        "Add two integers and return their sum.",
        {"a": {"type": "integer"}, "b": {"type": "integer"}},
        ["a", "b"],
    ),
    _tool(
        "send_email",
        "Send an email.",
        {"to": {"type": "string"}, "subject": {"type": "string"}, "body": {"type": "string"}},
        ["to", "subject", "body"],
    ),
    _tool(
        "convert_currency",
        "Convert an amount of money from one currency to another.",
        {
            "amount": {"type": "number"},
            "from_currency": {"type": "string", "minLength": 3, "maxLength": 3},
            "to_currency": {"type": "string", "minLength": 3, "maxLength": 3},
        },
        ["amount", "from_currency", "to_currency"],
    ),
]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}

# (prompt, the tool it asks for)
PROMPTS: list[tuple[str, str]] = [
    ("What is the weather like in Paris right now?", "get_weather"),
    ("Is it raining in London?", "get_weather"),
    ("Tell me the temperature in Tokyo in fahrenheit.", "get_weather"),
    ("I'm flying to Cairo tomorrow; how hot is it there?", "get_weather"),
    ("weather berlin", "get_weather"),
    ("What is 17 plus 25?", "add"),
    ("Add 1000 and 2345 for me.", "add"),
    ("Compute the sum of -8 and 13.", "add"),
    ("I have 3 apples and buy 9 more. Use the tool to count them.", "add"),
    ("sum 40 2", "add"),
    ("Email bob@example.com with the subject 'Lunch' saying I'll be late.", "send_email"),
    ("Send alice@example.org a note titled 'Report' telling her it is done.", "send_email"),
    ("Write to team@example.com: subject Standup, body Moved to 10am.", "send_email"),
    ("Please email my boss, boss@example.com, that I am sick today.", "send_email"),
    ("Notify ops@example.net by email that the server is back up.", "send_email"),
    ("How many euros is 100 US dollars?", "convert_currency"),
    ("Convert 2500 JPY to GBP.", "convert_currency"),
    ("What are 50 Swiss francs in euros?", "convert_currency"),
    ("I need to change 75.5 CAD into USD.", "convert_currency"),
    ("Convert 1 BTC worth of... no, 300 EUR to SEK.", "convert_currency"),
]


@dataclass(frozen=True)
class Outcome:
    """One reply, judged."""

    valid: bool
    right_tool: bool
    reason: str
    seconds: float


def judge(tool_calls: list[dict[str, Any]] | None, expected: str) -> tuple[bool, bool, str]:
    """Whether ``tool_calls`` (OpenAI's response shape) are valid calls to the declared
    tools, whether the first is ``expected``, and why not."""
    if not tool_calls:
        return False, False, "no call"
    for call in tool_calls:
        name = call["function"]["name"]
        if name not in SCHEMAS:
            return False, False, f"unknown tool {name}"
        try:
            arguments = json.loads(call["function"]["arguments"])
            jsonschema.validate(arguments, SCHEMAS[name])
        except (ValueError, jsonschema.ValidationError) as exc:
            return False, False, f"{name}: {type(exc).__name__}"
    first = tool_calls[0]["function"]["name"]
    return True, first == expected, "" if first == expected else f"called {first}"


def ask(client: httpx.Client, prompt: str, expected: str, choice: str) -> Outcome:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "tools": TOOLS,
        "tool_choice": choice,
        "temperature": 0,
        "seed": 1,
        "max_tokens": MAX_TOKENS,
    }
    started = time.perf_counter()
    response = client.post("/v1/chat/completions", json=body)
    seconds = time.perf_counter() - started
    response.raise_for_status()
    message = response.json()["choices"][0]["message"]
    valid, right, reason = judge(message.get("tool_calls"), expected)
    return Outcome(valid, right, reason, seconds)


def run(base_url: str, modes: dict[str, str]) -> dict[str, list[Outcome]]:
    """Each prompt with each ``modes`` row (label -> tool_choice), on one server."""
    results: dict[str, list[Outcome]] = {label: [] for label in modes}
    with httpx.Client(base_url=base_url, timeout=300) as client:
        ask(client, "Hello", "add", "auto")  # load the model
        for prompt, expected in PROMPTS:
            for label, choice in modes.items():
                results[label].append(ask(client, prompt, expected, choice))
    return results


def print_report(results: dict[str, list[Outcome]]) -> None:
    n = len(PROMPTS)
    print(f"\ntool-call validity ({MODEL}, {n} prompts, temperature 0)")
    header = f"{'tool_choice':<26} | {'valid calls':>11} | {'right tool':>10} | {'s/reply p50':>11}"
    print(header)
    print("-" * len(header))
    for label, outcomes in results.items():
        valid = sum(o.valid for o in outcomes)
        right = sum(o.right_tool for o in outcomes)
        p50 = sorted(o.seconds for o in outcomes)[len(outcomes) // 2]
        print(f"{LABELS[label]:<26} | {valid:>5}/{n} {valid / n:>4.0%} | "
              f"{right:>4}/{n} {right / n:>4.0%} | {p50:>11.2f}")  # fmt: skip
    for label, outcomes in results.items():
        for (prompt, _), outcome in zip(PROMPTS, outcomes, strict=True):
            if outcome.reason:
                print(f"  {label:<8} {prompt[:50]!r}: {outcome.reason}")


LABELS = {
    "free": "auto (no grammar)",
    "lazy": "auto (lazy grammar)",
    "required": "required (schema grammar)",
}


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="ollm-tools-") as tmp:
        workdir = Path(tmp)
        with ollm_server(workdir, {"OLLM_TOOL_GRAMMAR": "off"}) as server:
            results = run(server.base_url, {"free": "auto"})
        with ollm_server(workdir) as server:  # the default: lazy
            results |= run(server.base_url, {"lazy": "auto", "required": "required"})
    print_report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
