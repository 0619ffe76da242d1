"""Loaders, the walk and the splitter: formats, bad files (each a named skip), streaming, chunk ids.

Fixture files are written here (a PDF built with pypdf); `make_pdf` / `write_corpus` serve other index tests.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from agentkit.errors import BadInputError
from agentkit.indexes import loaders
from agentkit.indexes.loaders import FileFormat, SkipSource, format_for, register_format, walk
from agentkit.indexes.spec import IndexSpec, SplitterSpec
from agentkit.indexes.splitting import chunk_id, make_splitter, overlap_chars, split_segments


def make_pdf(path: Path, pages: list[str], *, password: str | None = None) -> Path:
    """A real PDF with one line of Helvetica text per page (pypdf has no text-drawing API)."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    for text in pages:
        page = writer.add_blank_page(612, 792)
        stream = DecodedStreamObject()
        stream.set_data(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode())
        page[NameObject("/Contents")] = writer._add_object(stream)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})}
        )
    if password:
        writer.encrypt(user_password=password, algorithm="RC4-128")  # RC4 needs no `cryptography`
    writer.write(path)
    return path


def write_corpus(root: Path) -> dict[str, Path]:
    """One good file per format; returns them by format name."""
    (root / "sub").mkdir(parents=True, exist_ok=True)
    files = {
        "text": root / "cats.txt",
        "markdown": root / "dogs.md",
        "html": root / "sub" / "birds.html",
        "json": root / "sub" / "fish.json",
        "code-python": root / "sub" / "adder.py",
    }
    files["text"].write_text("The cat sat on the mat. Cats like to sleep in the sun all afternoon.\n")
    files["markdown"].write_text(
        "# Dogs\n\nDogs bark at the mailman.\n\n## Food\n\nDogs eat meat and biscuits.\n"
    )
    files["html"].write_text(
        "<html><head><title>Birds</title><script>var tracking = 1;</script></head>"
        "<body><p>Birds fly south in winter.</p><style>p {}</style></body></html>"
    )
    files["json"].write_text('{"animal": "fish", "habitat": "water", "breathes": ["gills"]}')
    files["code-python"].write_text('def add(a, b):\n    """Add two numbers."""\n    return a + b\n')
    files["pdf"] = make_pdf(root / "sub" / "rabbits.pdf", ["Rabbits dig burrows.", "Rabbits eat carrots."])
    return files


def read_all(path: Path) -> list:
    fmt = format_for(path)
    assert fmt is not None
    fmt.check(path)
    return list(fmt.read(path))


def test_every_format_yields_its_text(tmp_path: Path) -> None:
    files = write_corpus(tmp_path)
    html = read_all(files["html"])[0].text
    assert "Birds fly south" in html and "tracking" not in html and "p {}" not in html
    assert '"habitat": "water"' in read_all(files["json"])[0].text
    assert "return a + b" in read_all(files["code-python"])[0].text
    pages = read_all(files["pdf"])
    assert [(s.page, s.text) for s in pages] == [(1, "Rabbits dig burrows."), (2, "Rabbits eat carrots.")]
    assert format_for(files["code-python"]).language == "python"


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("binary.txt", b"PK\x03\x04\x00\x00binary zip", "binary content (NUL byte at offset 4)"),
        ("empty.md", b"", "empty"),
        ("blank.txt", b"  \n\n\t ", "empty"),
        ("latin1.txt", "café crème".encode("latin-1"), "not UTF-8 (byte 0xe9 at offset 3)"),
        ("broken.json", b'{"a": 1,', "invalid JSON"),
        ("corrupt.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog", "not a readable PDF"),
        ("empty.html", b"<html><body><script>x()</script></body></html>", "no text in the HTML"),
    ],
)
def test_bad_files_are_named_skips(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(SkipSource, match=reason.replace("(", r"\(").replace(")", r"\)")):
        format_for(path).check(path)


def test_encrypted_pdf_is_skipped_with_the_fix(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "secret.pdf", ["classified"], password="hunter2")
    with pytest.raises(SkipSource) as info:
        format_for(path).check(path)
    assert info.value.reason == "encrypted PDF" and "qpdf --decrypt" in info.value.fix


def test_utf8_bom_and_crlf_are_normalised(tmp_path: Path) -> None:
    path = tmp_path / "win.txt"
    path.write_bytes(b"\xef\xbb\xbfline one\r\nline two\r\n")
    assert read_all(path)[0].text == "line one\nline two\n"


def test_walk_globs_duplicates_and_unsupported(tmp_path: Path) -> None:
    files = write_corpus(tmp_path)
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "notes.txt").write_text("hidden folder")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / "link.md").symlink_to(files["markdown"])
    found = walk([tmp_path, files["text"], tmp_path / "image.png"])
    names = sorted(f.path.name for f in found.files)
    assert names == sorted(p.name for p in files.values())
    assert found.duplicates == 2  # the symlink, and cats.txt named again
    assert found.skipped == [(str(tmp_path / "image.png"), "unsupported file type '.png'")]
    only_md = walk([tmp_path], include=["*.md"])
    assert [f.path.name for f in only_md.files] == ["dogs.md"]
    no_sub = walk([tmp_path], exclude=["sub"])
    assert sorted(f.path.name for f in no_sub.files) == ["cats.txt", "dogs.md"]
    by_path = walk([tmp_path], include=["sub/*.p*"])
    assert sorted(f.path.name for f in by_path.files) == ["adder.py", "rabbits.pdf"]


def test_register_format_rejects_taken_extensions() -> None:
    text = format_for(Path("a.txt"))
    with pytest.raises(BadInputError, match=r"\.txt"):
        register_format(FileFormat("text2", (".txt",), text.check, text.read))
    with pytest.raises(BadInputError, match="already registered"):
        register_format(FileFormat("text", (".zzz",), text.check, text.read))


def test_chunks_carry_positions_offsets_and_deterministic_ids(tmp_path: Path) -> None:
    text = "\n\n".join(f"Paragraph {i}: " + "word " * (10 + i % 7) for i in range(40))
    path = tmp_path / "doc.txt"
    path.write_text(text)
    splitter = make_splitter(SplitterSpec(chunk_size=120, chunk_overlap=20))
    first = list(split_segments(loaders.read_text(path), splitter, "/doc.txt", "sha", max_overlap=20))
    again = list(split_segments(loaders.read_text(path), splitter, "/doc.txt", "sha"))
    assert first == again and len(first) > 10
    assert [c.position for c in first] == list(range(len(first)))
    assert all(text[c.start_index : c.start_index + len(c.text)] == c.text for c in first)
    assert first[3].id == chunk_id("/doc.txt", "sha", 3, first[3].content_hash)
    other_version = list(split_segments(loaders.read_text(path), splitter, "/doc.txt", "sha2"))
    assert not {c.id for c in first} & {c.id for c in other_version}  # versions never collide


def test_large_file_is_streamed_in_bounded_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loaders, "TEXT_BLOCK_CHARS", 1 << 16)  # 64 Ki-char blocks keep the test quick
    line = "streaming keeps memory flat while the file grows without bound. " * 3 + "\n"
    path = tmp_path / "huge.txt"
    with open(path, "w") as handle:
        lines = (8 << 20) // len(line)  # ~8 MiB
        handle.write(line * lines)
    size = path.stat().st_size
    spec = SplitterSpec(chunk_size=500, chunk_overlap=50)
    tracemalloc.start()
    count, end = 0, 0
    for chunk in split_segments(
        loaders.read_text(path), make_splitter(spec), "/huge.txt", "sha", max_overlap=overlap_chars(spec)
    ):
        assert chunk.start_index >= end - 50  # in order, overlapping by at most chunk_overlap
        count, end = count + 1, chunk.start_index + len(chunk.text)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # Two 194-character lines fill a 500-character chunk; every line is reached and none twice
    # (the overlap, at most 50 characters, never holds a whole line).
    assert count == lines // 2 and not path.read_text()[end:].strip()
    assert peak < size // 8, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.1f} MB file"


def test_token_splitter_must_fit_the_model_window(tmp_path: Path) -> None:
    from agentkit.indexes.embedding import token_length
    from agentkit.registry import Registry

    spec = IndexSpec.model_validate(
        {"name": "t", "embedding": {"model": "custom:x.Y", "dimension": 3}, "splitter": {"kind": "tokens"}}
    )
    assert (spec.splitter.chunk_size, spec.splitter.chunk_overlap) == (200, 20)
    with pytest.raises(BadInputError, match="custom embeddings"):
        token_length(Registry(tmp_path), spec.embedding, spec.splitter)
    with pytest.raises(ValueError, match="chunk_overlap"):
        SplitterSpec(chunk_size=100, chunk_overlap=100)
    with pytest.raises(ValueError, match="chunk_sise"):
        SplitterSpec.model_validate({"chunk_sise": 100})
