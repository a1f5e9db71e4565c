"""The benchmark package's own logic: the workload it sends and the numbers it reports.

The benchmarks run by hand (``make bench``); these checks keep their arithmetic honest and
their imports working between runs.
"""

from __future__ import annotations

import pytest

from benchmarks.stats import check_records, summarize_probe, summarize_run
from benchmarks.workload import StreamRecord, chat_body, make_run, probe_specs


def test_a_run_is_deterministic_and_no_two_prompts_repeat() -> None:
    first, again = make_run(4, 0, 32), make_run(4, 0, 32)
    assert first == again
    prompts = [s.messages[-1]["content"] for s in first + make_run(4, 1, 32)]
    assert len(set(prompts)) == len(prompts)  # distinct across requests and repeats
    body = chat_body(first[0], "smollm2:135m")
    assert body["ignore_eos"] is True and body["max_tokens"] == 32 and body["stream"] is True


def test_the_probe_prompt_is_much_longer_than_the_stream_it_interrupts() -> None:
    stream, long = probe_specs()
    assert len(long.messages[-1]["content"]) > 5 * len(stream.messages[-1]["content"])


def test_a_run_summary_measures_from_each_arrival() -> None:
    a = StreamRecord("a", send=0.0, chunks=[1.0, 1.5, 2.0], finish=2.0, completion_tokens=3)
    b = StreamRecord("b", send=0.0, chunks=[2.0, 3.0], finish=4.0, completion_tokens=2)
    summary = summarize_run([a, b], arrivals=[0.0, 0.0])
    assert summary["completion_tokens"] == 5
    assert summary["wall_s"] == 4.0 and summary["agg_tps"] == pytest.approx(1.25)
    assert summary["ttft_p50_s"] == pytest.approx(1.5)  # TTFTs 1.0 and 2.0
    assert summary["itl_p50_s"] == pytest.approx(0.5)  # gaps 0.5, 0.5, 1.0


def test_record_checks_name_wrong_counts_and_errors() -> None:
    ok = StreamRecord("ok", send=0.0, chunks=[1.0], finish=1.0, completion_tokens=8)
    short = StreamRecord("short", send=0.0, chunks=[1.0], finish=1.0, completion_tokens=3)
    failed = StreamRecord("failed", send=0.0, error="HTTP 500")
    problems = check_records([ok, short, failed], 8, "run")
    assert problems == [
        "run short: 3 completion tokens, expected 8",
        "run failed: HTTP 500",
    ]


def test_the_probe_window_covers_only_the_long_prompts_prefill() -> None:
    stream = StreamRecord("s", send=0.0, chunks=[0.1, 0.2, 0.3, 0.9, 1.0])
    long = StreamRecord("l", send=0.25, chunks=[0.95], prompt_tokens=2000)
    probe = summarize_probe(stream, long)
    assert probe["long_ttft_s"] == pytest.approx(0.7)
    assert probe["itl_max_s"] == pytest.approx(0.6)  # the 0.3 -> 0.9 gap, during prefill
    assert probe["window_covered"] is True


def test_content_chunks_are_timed_for_chat_and_plain_completions() -> None:
    from benchmarks.loadgen import apply_event

    record = StreamRecord("r", send=0.0)
    assert apply_event(record, {"choices": [{"delta": {"content": "Hi"}}]}, 1.0)
    assert apply_event(record, {"choices": [{"text": " there", "finish_reason": "length"}]}, 2.0)
    assert not apply_event(record, {"choices": [], "usage": {"completion_tokens": 2}}, 3.0)
    assert record.chunks == [1.0, 2.0] and record.finish_reason == "length"
    assert record.completion_tokens == 2


def test_tool_call_judging() -> None:
    from benchmarks.tool_calls import PROMPTS, SCHEMAS, judge

    def call(name: str, arguments: str) -> dict:
        return {"function": {"name": name, "arguments": arguments}}

    assert len(PROMPTS) == 20 and {tool for _, tool in PROMPTS} == set(SCHEMAS)
    assert judge([call("add", '{"a": 1, "b": 2}')], "add") == (True, True, "")
    assert judge([call("add", '{"a": 1, "b": 2}')], "get_weather") == (True, False, "called add")
    assert judge(None, "add") == (False, False, "no call")
    assert judge([call("nope", "{}")], "add")[0] is False
    assert judge([call("add", '{"a": "1", "b": 2}')], "add")[0] is False  # schema-invalid
    assert judge([call("add", "{oops")], "add")[0] is False
    assert judge([call("add", '{"a": 1, "b": 2}'), call("add", "{}")], "add")[0] is False


def test_the_choices_benchmark_counts_computed_prompt_tokens() -> None:
    from benchmarks.choices import _total, prompt

    metrics = (
        "# HELP ollm_prompt_tokens_total x\n"
        'ollm_prompt_tokens_total{model="a"} 100.0\n'
        'ollm_prompt_tokens_total{model="b"} 20.0\n'
        "ollm_prefix_cache_tokens_total 30.0\n"
    )
    assert _total(metrics, "ollm_prompt_tokens_total") == 120.0
    assert _total(metrics, "ollm_prefix_cache_tokens_total") == 30.0
    assert prompt(0, "n=4") != prompt(1, "n=4") != prompt(0, "4")
