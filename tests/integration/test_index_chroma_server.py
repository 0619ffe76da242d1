"""The Chroma backend against a real `chroma run` server on loopback: the same index code, by host/port.

Skipped with a message when the `chroma` script is not installed next to the interpreter.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentkit.errors import AgentkitError
from agentkit.indexes import create_index, list_indexes, open_index, remove_index
from agentkit.registry import Registry
from agentkit.registry.importer import copy_hf_folder
from tests.unit.test_index_loaders import write_corpus

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ChromaServer:
    """`chroma run` on 127.0.0.1, a free port and a data folder; ready once its heartbeat answers."""

    def __init__(self, binary: str, data: Path) -> None:
        self.binary, self.data, self.port = binary, data, _free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "run", "--path", str(self.data), "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/api/v2/heartbeat", timeout=1
                ) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                if self.proc.poll() is not None:
                    pytest.fail(
                        f"`chroma run` exited with {self.proc.returncode} before its heartbeat answered"
                    )
                time.sleep(0.2)
        self.stop()
        pytest.fail("`chroma run` did not answer its heartbeat within 60 s")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[ChromaServer]:
    beside = Path(sys.executable).with_name("chroma")
    binary = str(beside) if beside.is_file() else shutil.which("chroma")
    if binary is None:
        pytest.skip(
            "no `chroma` script beside the interpreter or on PATH (it comes with the chromadb package)"
        )
    running = ChromaServer(binary, tmp_path / "chroma-server")
    running.start()
    yield running
    running.stop()


@pytest.fixture()
def home(tmp_path: Path, registry: Registry) -> Path:
    root = tmp_path / "home"
    Registry(root).create_entry("minilm-l6", lambda stage: copy_hf_folder(registry.path("minilm-l6"), stage, link=True))
    return root


def test_index_on_a_chroma_server_persists_across_clients_and_restarts(
    server: ChromaServer, home: Path, tmp_path: Path
) -> None:
    write_corpus(tmp_path / "corpus")
    options = {"host": "127.0.0.1", "port": server.port}
    index = create_index(
        "remote",
        backend="chroma",
        backend_options=options,
        splitter={"chunk_size": 200, "chunk_overlap": 20},
        home=home,
    )
    report = index.add([tmp_path / "corpus"])
    assert report.indexed == 6 and index.backend.all_ids() == index.manifest.visible_ids()
    assert not (index.folder / "chroma").exists()  # the vectors live on the server
    index.close()

    server.stop()
    server.start()  # same data folder, same port: the collection must have been persisted
    with open_index("remote", home=home) as again:
        top = again.search("what do rabbits eat", mode="dense", k=1)[0]
        assert top.page_content == "Rabbits eat carrots." and top.metadata["page"] == 2
        hybrid = again.search("mailman", k=2, filter={"format": "markdown"})
        assert hybrid and {d.metadata["format"] for d in hybrid} == {"markdown"}
        assert again.add([tmp_path / "corpus"]).embedded == 0  # incremental against the server too

    remove_index("remote", home=home)
    assert list_indexes(home) == []
    import chromadb
    from chromadb.config import Settings

    client = chromadb.HttpClient(
        host="127.0.0.1", port=server.port, settings=Settings(anonymized_telemetry=False)
    )
    assert "agentkit-remote" not in [c.name for c in client.list_collections()]  # dropped on the server too


def test_an_unreachable_server_is_one_clear_error_and_no_index(home: Path) -> None:
    port = _free_port()  # nothing listens here
    with pytest.raises(
        AgentkitError, match=rf"Could not open a Chroma server at 127.0.0.1:{port}.*chroma run"
    ):
        create_index("down", backend="chroma", backend_options={"host": "127.0.0.1", "port": port}, home=home)
    assert list_indexes(home) == [] and not (home / "indexes" / "down").exists()
