"""Splitting a streamed document into chunks with deterministic ids, positions and content hashes.

Recursive character splitting, or token-aware splitting measured with the embedding's tokenizer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Any

from agentkit.indexes.loaders import Segment
from agentkit.indexes.spec import SplitterKind, SplitterSpec


@dataclass(frozen=True)
class Chunk:
    id: str
    text: str
    position: int  # 0, 1, 2, ... within the source
    start_index: int  # character offset within the page (PDF) or the whole document
    page: int | None
    content_hash: str  # sha256 of text

    def metadata(self, source: str, source_hash: str, fmt: str) -> dict[str, Any]:
        """What every stored chunk carries (Chroma accepts no None, so absent keys stay absent)."""
        meta: dict[str, Any] = {
            "source": source,
            "chunk_id": self.id,
            "position": self.position,
            "start_index": self.start_index,
            "content_hash": self.content_hash,
            "source_hash": source_hash,
            "format": fmt,
        }
        if self.page is not None:
            meta["page"] = self.page
        return meta


def chunk_id(source: str, source_hash: str, position: int, content_hash: str) -> str:
    """Same file version, same position, same text -> same id: a re-run overwrites, never duplicates.
    The file hash keeps two versions of a file apart while one replaces the other."""
    key = f"{source}\n{source_hash}\n{position}\n{content_hash}".encode()
    return hashlib.sha256(key).hexdigest()[:32]


def make_splitter(
    spec: SplitterSpec, *, language: str | None = None, token_length: Callable[[str], int] | None = None
):  # -> RecursiveCharacterTextSplitter
    """A RecursiveCharacterTextSplitter: code/markdown-aware separators, length in chars or tokens."""
    from langchain_text_splitters import Language, RecursiveCharacterTextSplitter

    kwargs: dict[str, Any] = {"chunk_size": spec.chunk_size, "chunk_overlap": spec.chunk_overlap}
    if spec.kind is SplitterKind.TOKENS:
        if token_length is None:
            raise ValueError("the tokens splitter needs the embedding model's tokenizer (token_length)")
        kwargs["length_function"] = token_length
    if language is not None:
        kwargs["separators"] = RecursiveCharacterTextSplitter.get_separators_for_language(Language(language))
        kwargs["is_separator_regex"] = True
    return RecursiveCharacterTextSplitter(**kwargs)


def overlap_chars(spec: SplitterSpec) -> int | None:
    """The most characters two neighbouring chunks can share: chunk_overlap when length is counted in
    characters; unknown (None) when counted in tokens."""
    return spec.chunk_overlap if spec.kind is SplitterKind.RECURSIVE else None


def _locate(text: str, pieces: list[str], max_overlap: int | None) -> list[int]:
    """Start offset of each piece. A piece starts after the previous start and, when the overlap is
    bounded, no earlier than `max_overlap` before the previous end: in repetitive text (the same
    line a thousand times) the first match after the previous start would be far too early."""
    starts: list[int] = []
    previous_start, previous_end = -1, 0
    for piece in pieces:
        lowest = previous_start + 1
        if max_overlap is not None:
            lowest = max(lowest, previous_end - max_overlap)
        at = text.find(piece, lowest)
        if at < 0:  # stripped or rejoined differently: the nearest match after the previous start
            at = max(text.find(piece, previous_start + 1), previous_start + 1)
        starts.append(at)
        previous_start, previous_end = at, at + len(piece)
    return starts


def split_segments(
    segments: Iterable[Segment],
    splitter: Any,
    source: str,
    source_hash: str,
    *,
    max_overlap: int | None = None,
) -> Iterator[Chunk]:
    """Chunks of a streamed document. A segment that `continues` keeps its last (possibly cut)
    chunk back and re-splits it with the next block, so block edges never cut a chunk short."""
    position = 0
    carry, carry_start = "", 0
    # The empty sentinel flushes a carry left by a stream whose last segment still `continues`.
    for segment in chain(segments, [Segment("", 0)]):
        text, base = (carry + segment.text, carry_start) if carry else (segment.text, segment.start)
        pieces = splitter.split_text(text)
        starts = _locate(text, pieces, max_overlap)
        emit = len(pieces) - 1 if segment.continues and pieces else len(pieces)
        for piece, start in zip(pieces[:emit], starts[:emit]):
            content_hash = hashlib.sha256(piece.encode()).hexdigest()
            yield Chunk(
                chunk_id(source, source_hash, position, content_hash),
                piece,
                position,
                base + start,
                segment.page,
                content_hash,
            )
            position += 1
        if segment.continues:
            cut = starts[emit] if emit < len(pieces) else len(text)
            carry, carry_start = text[cut:], base + cut
        else:
            carry = ""
