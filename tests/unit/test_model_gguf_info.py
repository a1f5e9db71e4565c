"""The GGUF header reader against files written by the ``gguf`` package (and its reader)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader, GGUFWriter
from gguf.constants import LlamaFileType

from ollm.services.models.gguf_info import GGUFFormatError, parse_header, read_gguf_info

TEMPLATE = "{% for m in messages %}{{ m.content }}{% endfor %}"


def write_gguf(
    path: Path,
    *,
    arch: str = "llama",
    layers: int = 2,
    context: int = 256,
    embedding: int = 8,
    heads: int = 2,
    heads_kv: int = 1,
    file_type: LlamaFileType | None = LlamaFileType.MOSTLY_Q8_0,
    license_: str | None = "mit",
    template: str | None = TEMPLATE,
    vocab: int = 100,
    padding: int = 0,
) -> Path:
    """A tiny but well-formed GGUF file: real metadata, small f32 tensors, a vocabulary
    long enough to be skipped. ``padding`` adds a tensor of that many extra floats."""
    writer = GGUFWriter(path, arch)
    writer.add_name("tiny test model")
    writer.add_block_count(layers)
    writer.add_context_length(context)
    writer.add_embedding_length(embedding)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads_kv)
    if file_type is not None:
        writer.add_file_type(file_type)
    if license_ is not None:
        writer.add_license(license_)
    if template is not None:
        writer.add_chat_template(template)
    writer.add_languages(["en", "fr"])
    writer.add_token_list([f"tok{i}" for i in range(vocab)])
    writer.add_token_scores([0.0] * vocab)
    writer.add_tensor("token_embd.weight", np.zeros((vocab, embedding), dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.ones((embedding,), dtype=np.float32))
    if padding:
        writer.add_tensor("padding.weight", np.zeros((padding,), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_reads_metadata_and_tensors(tmp_path: Path) -> None:
    info = read_gguf_info(write_gguf(tmp_path / "m.gguf"))
    assert info.architecture == "llama"
    assert info.context_length == 256
    assert info.metadata["general.name"] == "tiny test model"
    assert info.metadata["general.license"] == "mit"
    assert info.metadata["tokenizer.chat_template"] == TEMPLATE
    assert info.metadata["general.languages"] == ["en", "fr"]  # small arrays are kept
    assert "tokenizer.ggml.tokens" not in info.metadata  # big ones are skipped
    assert info.skipped_arrays == {"tokenizer.ggml.tokens": 100, "tokenizer.ggml.scores": 100}
    assert info.parameter_count == 100 * 8 + 8
    assert info.quantization == "Q8_0"  # from general.file_type, not the file name


def test_agrees_with_the_gguf_package_reader(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", vocab=300)
    ours = read_gguf_info(path)
    theirs = GGUFReader(path)
    for key, field in theirs.fields.items():
        if key.startswith("GGUF.") or key in ours.skipped_arrays:
            continue
        expected = field.contents()
        assert ours.metadata[key] == pytest.approx(expected), key
    assert ours.parameter_count == sum(int(t.n_elements) for t in theirs.tensors)
    assert [t.name for t in ours.tensors] == [t.name for t in theirs.tensors]


def test_quantization_falls_back_to_tensor_types(tmp_path: Path) -> None:
    info = read_gguf_info(write_gguf(tmp_path / "m.gguf", file_type=None))
    assert info.quantization == "F32"  # the 2-D weights are stored as f32


def test_kv_bytes_per_cell_from_attention_shape(tmp_path: Path) -> None:
    info = read_gguf_info(write_gguf(tmp_path / "m.gguf", layers=3, embedding=16, heads=4))
    # 3 layers x 1 KV head x (4 + 4 dims for K and V) x 2 bytes
    assert info.kv_bytes_per_cell() == 3 * 1 * (16 // 4) * 2 * 2


@pytest.mark.parametrize(
    "data",
    [b"", b"GGUF", b"NOPE" + bytes(40), b"GGUF\x03\x00\x00\x00" + bytes(8)],
    ids=["empty", "magic-only", "bad-magic", "truncated"],
)
def test_refuses_what_is_not_gguf(data: bytes) -> None:
    with pytest.raises(GGUFFormatError):
        parse_header(data)


def test_truncated_file_is_refused_not_overread(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf")
    data = path.read_bytes()
    with pytest.raises(GGUFFormatError):
        parse_header(data[:200])  # cut inside the key/value section


def test_huge_declared_array_is_refused(tmp_path: Path) -> None:
    # A header claiming 2**60 strings must fail on bounds, not loop or allocate.
    header = b"GGUF" + (3).to_bytes(4, "little") + (0).to_bytes(8, "little")
    header += (1).to_bytes(8, "little")
    key = b"tokenizer.ggml.tokens"
    header += len(key).to_bytes(8, "little") + key + (9).to_bytes(4, "little")
    header += (8).to_bytes(4, "little") + (2**60).to_bytes(8, "little")
    with pytest.raises(GGUFFormatError):
        parse_header(header + bytes(64))
