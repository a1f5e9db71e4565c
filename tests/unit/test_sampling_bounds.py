"""SamplingParams checks the bounds the engine needs, whichever dialect built it."""

from __future__ import annotations

import pytest

from ollm.errors import InvalidRequestError
from ollm.sampling import MAX_COUNT, SamplingParams


@pytest.mark.parametrize(
    "fields",
    [
        {"temperature": float("inf")},
        {"temperature": float("nan")},
        {"temperature": 1e308},
        {"top_p": 1.5},
        {"top_k": MAX_COUNT + 1},
        {"repeat_penalty": float("inf")},
        {"presence_penalty": -3.0},
        {"penalty_last_n": 2**40},
        {"max_tokens": 0},
        {"max_tokens": 10**30},
        {"seed": 2**70},
    ],
)
def test_out_of_range_values_are_a_400_naming_the_field(fields: dict[str, float]) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        SamplingParams(**fields)  # type: ignore[arg-type]
    assert caught.value.status_code == 400
    assert caught.value.param == next(iter(fields))


def test_the_edges_of_each_range_are_accepted() -> None:
    SamplingParams(temperature=0.0, top_p=1.0, top_k=MAX_COUNT, max_tokens=MAX_COUNT)
    SamplingParams(seed=-1, repeat_penalty=10.0, presence_penalty=2.0, frequency_penalty=-2.0)
