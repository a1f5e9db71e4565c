"""Model names: canonical forms, and everything unsafe refused with a 400."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollm.errors import InvalidModelNameError, ModelNotFoundError, PullError
from ollm.model_names import canonical_name, lookup_key, name_from_file, parse_model_name
from ollm.services.models.pull import HubReference, RemoteFile, choose_file, parse_hub_reference


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("smollm2:135m", "smollm2:135m"),
        ("SmolLM2:135M", "smollm2:135m"),
        ("llama3", "llama3:latest"),
        ("library/llama3:8b", "library/llama3:8b"),
        ("hf.co/Org/Repo-GGUF:Q4_K_M", "hf.co/org/repo-gguf:q4_k_m"),
        ("org/repo:Model-Q4_1.gguf", "org/repo:model-q4_1.gguf"),
        ("a.b_c-d:v1.2", "a.b_c-d:v1.2"),
    ],
)
def test_canonical_names(text: str, canonical: str) -> None:
    assert canonical_name(text) == canonical


def test_parts() -> None:
    name = parse_model_name("hf.co/Org/Repo:Q8_0")
    assert (name.host, name.namespace, name.name, name.tag) == ("hf.co", "org", "repo", "q8_0")
    assert name.repository == "hf.co/org/repo"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "../etc/passwd",
        "a/../b",
        "..",
        "/etc/passwd",
        "/abs:latest",
        "a\\b",
        "C:\\models\\x",
        "a\x00b",
        "a\nb",
        "a\tb",
        "a\x7fb",
        "\uff53\uff4d\uff4f\uff4c\uff4c\uff4d\uff12",  # fullwidth "smollm2": NFKC changes it
        "smöllm",  # non-ASCII
        "smollm\u0430",  # Cyrillic a, a look-alike of Latin a
        "x\u200b",  # zero-width space
        "a" * 300,
        "a/b/c/d",
        "a:",
        ":tag",
        "a:b:c",
        "a:b/c",
        ".hidden",
        "-dash",
        "a//b",
        "~/x",
        "a b",
        "bad_host/a/b",
        "a:../x",
        "a:..",
    ],
)
def test_unsafe_names_are_refused(text: str) -> None:
    with pytest.raises(InvalidModelNameError) as caught:
        parse_model_name(text)
    assert caught.value.status_code == 400
    assert lookup_key(text) is None


def test_non_string_is_refused() -> None:
    with pytest.raises(InvalidModelNameError):
        parse_model_name(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("file", "model_id"),
    [
        ("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m-instruct.q4_1:latest"),
        ("My Model (v2).gguf", "my-model-v2:latest"),
        ("..weird...name...gguf", "weird.name:latest"),
        ("modèle.gguf", "mod-le:latest"),
        ("___.gguf", "model:latest"),
    ],
)
def test_names_from_dropped_in_files(file: str, model_id: str) -> None:
    assert name_from_file(Path(file)) == model_id


# -- pull references ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "repo", "selector", "local"),
    [
        ("hf.co/Org/Repo-GGUF:Q4_K_M", "Org/Repo-GGUF", "Q4_K_M", "hf.co/org/repo-gguf:q4_k_m"),
        ("hf.co/Org/Repo", "Org/Repo", None, "hf.co/org/repo:latest"),
        ("huggingface.co/Org/Repo:q8_0", "Org/Repo", "q8_0", "hf.co/org/repo:q8_0"),
        ("Org/Repo:Model-Q4_1.gguf", "Org/Repo", "Model-Q4_1.gguf", "org/repo:model-q4_1.gguf"),
    ],
)
def test_hub_references(text: str, repo: str, selector: str | None, local: str) -> None:
    reference = parse_hub_reference(text)
    assert (reference.repo_id, reference.selector, reference.local_name) == (repo, selector, local)


@pytest.mark.parametrize(
    "text", ["llama3", "example.com/org/repo:q4", "hf.co/../../x", "hf.co/org/repo:a/b"]
)
def test_bad_pull_references(text: str) -> None:
    with pytest.raises(InvalidModelNameError):
        parse_hub_reference(text)


FILES = [
    RemoteFile("README.md", 10, None),
    RemoteFile("Model-Q4_K_M.gguf", 100, "a" * 64),
    RemoteFile("Model-Q4_K_S.gguf", 90, "b" * 64),
    RemoteFile("model.Q8_0.gguf", 200, "c" * 64),
    RemoteFile("mmproj-Model-Q4_K_M.gguf", 5, "d" * 64),
    RemoteFile("big/Model-Q6_K-00001-of-00002.gguf", 50, "e" * 64),
    RemoteFile("big/Model-Q6_K-00002-of-00002.gguf", 50, "f" * 64),
]


def ref(selector: str | None) -> HubReference:
    return HubReference("Org/Repo", selector, "hf.co/org/repo:x")


@pytest.mark.parametrize(
    ("selector", "path"),
    [
        ("Q4_K_M", "Model-Q4_K_M.gguf"),
        ("q4_k_m", "Model-Q4_K_M.gguf"),
        ("Q4_K_S", "Model-Q4_K_S.gguf"),
        ("q8_0", "model.Q8_0.gguf"),
        (None, "Model-Q4_K_M.gguf"),  # several files: Ollama's default quantization
        ("model.q8_0.gguf", "model.Q8_0.gguf"),  # a file named, case-insensitively
    ],
)
def test_choose_file(selector: str | None, path: str) -> None:
    assert choose_file(FILES, ref(selector)).path == path


def test_choose_file_quant_is_a_whole_token() -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        choose_file(FILES, ref("Q4_K"))  # not a prefix match on Q4_K_M
    assert "Q4_K_M" in caught.value.message and "Q8_0" in caught.value.message


def test_choose_file_single_gguf_without_quant() -> None:
    only = [RemoteFile("x-IQ2_M.gguf", 1, "a" * 64), RemoteFile("README.md", 1, None)]
    assert choose_file(only, ref(None)).path == "x-IQ2_M.gguf"


def test_choose_file_refuses_split_files() -> None:
    with pytest.raises(PullError):
        choose_file(FILES, ref("Q6_K"))


def test_choose_file_ambiguous() -> None:
    files = [RemoteFile("a-Q4_0.gguf", 1, "a" * 64), RemoteFile("b-Q4_0.gguf", 1, "b" * 64)]
    with pytest.raises(InvalidModelNameError):
        choose_file(files, ref("Q4_0"))


def test_choose_file_no_gguf() -> None:
    with pytest.raises(ModelNotFoundError, match="no GGUF"):
        choose_file([RemoteFile("README.md", 1, None)], ref(None))
