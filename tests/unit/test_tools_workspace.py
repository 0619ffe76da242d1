"""read_file / write_file / list_files stay inside the workspace: `..`, absolute paths, and symlinks
(a file or a parent folder) that lead out are refused, and nothing outside is read, written or listed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentkit.tools import ToolContext, build_tools, invoke_tool


@pytest.fixture
def sandbox(tmp_path: Path) -> tuple[Path, Path, dict]:
    """(workspace, outside, tools by name); `outside` holds secret.txt and a folder secrets/."""
    workspace, outside = tmp_path / "ws", tmp_path / "outside"
    workspace.mkdir()
    (outside / "secrets").mkdir(parents=True)
    (outside / "secret.txt").write_text("TOP SECRET")
    (outside / "secrets" / "key.txt").write_text("KEY")
    (workspace / "notes.txt").write_text("hello notes")
    (workspace / "sub").mkdir()
    (workspace / "sub" / "inner.txt").write_text("inner")
    os.symlink(outside / "secret.txt", workspace / "link.txt")  # a file link that leads out
    os.symlink(outside / "secrets", workspace / "linkdir")  # a folder link that leads out
    os.symlink(workspace / "notes.txt", workspace / "alias.txt")  # a link that stays inside
    tools = {
        t.name: t for t in build_tools(["read_file", "write_file", "list_files"], ToolContext(workspace))
    }
    return workspace, outside, tools


def _call(tools: dict, name: str, **args: str):
    return invoke_tool(tools[name], args, timeout_s=10)


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_read_write_list_inside(sandbox: tuple[Path, Path, dict]) -> None:
    workspace, _, tools = sandbox
    assert _call(tools, "read_file", path="notes.txt").output == "hello notes"
    assert _call(tools, "read_file", path="sub/../alias.txt").output == "hello notes"
    out = _call(tools, "write_file", path="new/deep/out.txt", content="written")
    assert out.ok and (workspace / "new" / "deep" / "out.txt").read_text() == "written"
    assert not [
        p for p in (workspace / "new" / "deep").iterdir() if p.name != "out.txt"
    ]  # no temp files left
    listing = _call(tools, "list_files").output.splitlines()
    assert {"notes.txt", "sub/", "sub/inner.txt", "new/deep/out.txt", "alias.txt"} <= set(listing)
    assert "link.txt (link outside, refused)" in listing and "linkdir (link outside, refused)" in listing
    assert not any("key.txt" in line for line in listing)  # the outside folder is not entered
    assert _call(tools, "list_files", path="sub").output == "sub/inner.txt"


ESCAPES = {
    "dotdot": "../outside/secret.txt",
    "dotdot_deep": "sub/../../outside/secret.txt",
    "absolute": "{outside}/secret.txt",
    "symlink_file": "link.txt",
    "symlinked_parent": "linkdir/key.txt",
}


@pytest.mark.parametrize("kind", list(ESCAPES))
def test_read_refuses_escapes(sandbox: tuple[Path, Path, dict], kind: str) -> None:
    _, outside, tools = sandbox
    out = _call(tools, "read_file", path=ESCAPES[kind].format(outside=outside))
    assert not out.ok and "workspace" in out.error
    assert "SECRET" not in out.output + out.error and "KEY" not in out.output + out.error


@pytest.mark.parametrize("kind", [*ESCAPES, "symlinked_parent_new_file", "new_dir_under_link"])
def test_write_refuses_escapes(sandbox: tuple[Path, Path, dict], kind: str) -> None:
    _, outside, tools = sandbox
    before = _snapshot(outside)
    path = {"symlinked_parent_new_file": "linkdir/new.txt", "new_dir_under_link": "linkdir/a/b/new.txt"}.get(
        kind, ESCAPES.get(kind, "")
    )
    out = _call(tools, "write_file", path=path.format(outside=outside), content="PWNED")
    assert not out.ok and "workspace" in out.error
    assert _snapshot(outside) == before  # nothing changed or appeared outside


@pytest.mark.parametrize("path", ["..", "../outside", "{outside}", "linkdir", "/"])
def test_list_refuses_escapes(sandbox: tuple[Path, Path, dict], path: str) -> None:
    _, outside, tools = sandbox
    out = _call(tools, "list_files", path=path.format(outside=outside))
    assert not out.ok and "workspace" in out.error and "key.txt" not in out.output


def test_dangling_link_out_is_not_written_through(sandbox: tuple[Path, Path, dict]) -> None:
    workspace, outside, tools = sandbox
    os.symlink(outside / "created.txt", workspace / "dangling.txt")
    out = _call(tools, "write_file", path="dangling.txt", content="PWNED")
    assert not out.ok and not (outside / "created.txt").exists()


def test_read_limits_and_refusals(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("a" * 50_000)
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01\x02" * 100)
    read = build_tools([{"name": "read_file", "max_chars": 1000}], ToolContext(tmp_path))[0]
    out = invoke_tool(read, {"path": "big.txt"}, timeout_s=5)
    assert out.ok and out.output.startswith("a" * 1000) and "truncated: big.txt is 50000 bytes" in out.output
    assert len(out.output) < 1100
    binary = invoke_tool(read, {"path": "blob.bin"}, timeout_s=5)
    assert not binary.ok and "binary" in binary.error
    missing = invoke_tool(read, {"path": "nope.txt"}, timeout_s=5)
    assert not missing.ok and "list_files" in missing.error
    folder = invoke_tool(read, {"path": "."}, timeout_s=5)
    assert not folder.ok and "directory" in folder.error
    os.mkfifo(tmp_path / "pipe")
    fifo = invoke_tool(read, {"path": "pipe"}, timeout_s=5)
    assert not fifo.ok and "not a regular file" in fifo.error
    empty = invoke_tool(read, {"path": " "}, timeout_s=5)
    assert not empty.ok and "empty path" in empty.error


def test_write_size_limit(tmp_path: Path) -> None:
    write = build_tools([{"name": "write_file", "max_bytes": 10}], ToolContext(tmp_path))[0]
    out = invoke_tool(write, {"path": "x.txt", "content": "y" * 11}, timeout_s=5)
    assert not out.ok and "at most 10" in out.error and not (tmp_path / "x.txt").exists()


def test_os_errors_are_observations_without_absolute_paths(tmp_path: Path) -> None:
    (tmp_path / "plain.txt").write_text("x")
    write = build_tools(["write_file"], ToolContext(tmp_path))[0]
    out = invoke_tool(write, {"path": "plain.txt/child.txt", "content": "y"}, timeout_s=5)
    assert not out.ok and "cannot write 'plain.txt/child.txt'" in out.error and str(tmp_path) not in out.error


def test_listing_is_capped_and_skips_noise(tmp_path: Path) -> None:
    (tmp_path / ".git" / "objects").mkdir(parents=True)
    (tmp_path / ".git" / "objects" / "ab").write_text("blob")
    for n in range(30):
        (tmp_path / f"f{n:02d}.txt").write_text("x")
    lister = build_tools([{"name": "list_files", "max_entries": 10}], ToolContext(tmp_path))[0]
    lines = invoke_tool(lister, {}, timeout_s=5).output.splitlines()
    assert lines[0] == ".git/ (not listed)" and len(lines) == 11
    assert lines[-1] == "[... 21 more entries not shown]"
    assert not any("objects" in line for line in lines)


# ---- issue 12 §1: links planted in the workspace, and links swapped in after the check -------------
@pytest.mark.parametrize("planted", [".out.txt.tmp", ".out.txt.{}.tmp"])
def test_write_does_not_follow_a_symlink_planted_at_a_temp_name(
    sandbox: tuple[Path, Path, dict], planted: str
) -> None:
    """A link at the temp name an atomic write would use (old fixed name, or a guessed random-looking
    one) is never opened: the temp file is new (O_EXCL|O_NOFOLLOW), with a random name."""
    workspace, outside, tools = sandbox
    before = _snapshot(outside)
    os.symlink(outside / "secret.txt", workspace / planted.format("0" * 16))
    out = _call(tools, "write_file", path="out.txt", content="PWNED")
    assert out.ok and (workspace / "out.txt").read_text() == "PWNED"
    assert _snapshot(outside) == before
    assert (workspace / planted.format("0" * 16)).is_symlink()  # left alone, not written through


def test_write_refuses_a_hard_link_whose_other_name_is_outside(sandbox: tuple[Path, Path, dict]) -> None:
    workspace, outside, tools = sandbox
    os.link(outside / "secret.txt", workspace / "hard.txt")
    out = _call(tools, "write_file", path="hard.txt", content="PWNED")
    assert not out.ok and "hard link" in out.error
    assert (outside / "secret.txt").read_text() == "TOP SECRET" and (workspace / "hard.txt").read_text() == "TOP SECRET"


def test_a_parent_swapped_for_a_link_after_the_check_is_refused_at_use(sandbox: tuple[Path, Path, dict]) -> None:
    """confine() approved `sub/…`; then `sub` became a link to outside (a race with another process):
    the write, the read and the removal walk the path again with O_NOFOLLOW and refuse."""
    from agentkit.tools.confined import confine, read_head, remove, write_bytes
    from agentkit.tools.registry import ToolError

    workspace, outside, _ = sandbox
    new_target = confine(workspace, "sub/deep/new.txt")
    read_target = confine(workspace, "sub/key.txt")
    (workspace / "sub").rename(workspace / "sub-moved")
    os.symlink(outside / "secrets", workspace / "sub")
    before = _snapshot(outside)
    for attempt in (
        lambda: write_bytes(workspace, new_target, b"PWNED"),
        lambda: read_head(workspace, read_target, 100),
        lambda: remove(workspace, read_target),
    ):
        with pytest.raises(ToolError, match="changed while in use"):
            attempt()
    assert _snapshot(outside) == before and not (outside / "secrets" / "deep").exists()


def test_a_file_swapped_for_a_link_after_the_check_is_not_read_or_written(sandbox: tuple[Path, Path, dict]) -> None:
    from agentkit.tools.confined import confine, read_head, write_bytes
    from agentkit.tools.registry import ToolError

    workspace, outside, _ = sandbox
    target = confine(workspace, "notes.txt")
    (workspace / "notes.txt").unlink()
    os.symlink(outside / "secret.txt", workspace / "notes.txt")
    with pytest.raises(ToolError, match="changed while in use"):
        read_head(workspace, target, 100)
    with pytest.raises(ToolError, match="changed while in use"):
        write_bytes(workspace, target, b"PWNED")
    assert (outside / "secret.txt").read_text() == "TOP SECRET"


def test_goal_files_are_written_through_no_planted_link_fake_model(tmp_path: Path) -> None:
    """A goal's `files:` are written into the workspace before the run; a link planted there earlier
    (by a python tool run, or in a copied input folder) at the old temp name is not followed."""
    from agentkit.agents.agent import Agent
    from agentkit.agents.fake import ScriptedChatModel

    workspace, outside = tmp_path / "ws", tmp_path / "outside.txt"
    workspace.mkdir()
    outside.write_text("KEEP")
    os.symlink(outside, workspace / ".in.txt.tmp")
    agent = Agent(model=ScriptedChatModel(script=[("finish", {"answer": "done"})]), goals=["g"],
                  workspace=workspace, files={"in.txt": "hello"}, runs_dir=tmp_path / "runs")  # fmt: skip
    agent.run()
    assert outside.read_text() == "KEEP" and (workspace / "in.txt").read_text() == "hello"


# ---- found by an attacker's review: loops, deep trees, links as outputs ---------------------------
def test_a_symlink_loop_is_an_error_not_a_crash(tmp_path: Path) -> None:
    from agentkit.agents.checks import run_check
    from agentkit.agents.spec import FileExistsCheck

    os.symlink("loop-b", tmp_path / "loop-a")
    os.symlink("loop-a", tmp_path / "loop-b")
    tools = {t.name: t for t in build_tools(["read_file", "write_file", "list_files"], ToolContext(tmp_path))}
    for name, args in (("read_file", {"path": "loop-a"}), ("write_file", {"path": "loop-a/x", "content": "y"})):
        out = invoke_tool(tools[name], args, timeout_s=5)
        assert not out.ok and "symlink loop" in out.error
    listing = invoke_tool(tools["list_files"], {}, timeout_s=5)
    assert listing.ok and "loop-a (symlink loop)" in listing.output
    assert not run_check(FileExistsCheck(file_exists="loop-a"), tmp_path).passed


def test_a_tree_deeper_than_the_recursion_limit_is_listed_to_a_depth(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY)
    for _ in range(1100):  # os.walk recurses once per level: ~1000 levels raised RecursionError
        os.mkdir("d", dir_fd=fd)
        fd, parent = os.open("d", os.O_RDONLY, dir_fd=fd), fd
        os.close(parent)
    os.close(fd)
    try:
        lister = build_tools(["list_files"], ToolContext(tmp_path))[0]
        out = invoke_tool(lister, {}, timeout_s=30)
        assert out.ok and out.output.splitlines()[-1].endswith("(not listed)")
    finally:
        _remove_chain(tmp_path, "d", 1100)


def _remove_chain(top: Path, name: str, depth: int) -> None:
    """Remove top/name/name/... deepest first: shutil.rmtree (and pytest's clean-up of old tmp
    folders, which uses it) recurses once per level and fails on a tree this deep."""
    fds = [os.open(top, os.O_RDONLY)]
    for _ in range(depth - 1):
        fds.append(os.open(name, os.O_RDONLY, dir_fd=fds[-1]))
    while fds:
        fd = fds.pop()
        os.rmdir(name, dir_fd=fd)
        os.close(fd)


def test_a_stale_output_that_is_a_link_is_removed_not_its_target_fake_model(tmp_path: Path) -> None:
    """`outputs: [report.md]` where an earlier run made report.md a link to an input (or to a file
    outside): the link goes, the file it points to stays, and the run starts."""
    from agentkit.agents.agent import Agent
    from agentkit.agents.fake import ScriptedChatModel

    workspace, outside = tmp_path / "ws", tmp_path / "outside.txt"
    (workspace / "inputs").mkdir(parents=True)
    (workspace / "inputs" / "data.csv").write_text("a,b")
    outside.write_text("KEEP")
    os.symlink("inputs/data.csv", workspace / "report.md")
    os.symlink(outside, workspace / "summary.md")
    agent = Agent(model=ScriptedChatModel(script=[("finish", {"answer": "done"})]), goals=["g"],
                  workspace=workspace, outputs=["report.md", "summary.md"], runs_dir=tmp_path / "runs")  # fmt: skip
    agent.run()
    assert (workspace / "inputs" / "data.csv").read_text() == "a,b" and outside.read_text() == "KEEP"
    assert not os.path.lexists(workspace / "report.md") and not os.path.lexists(workspace / "summary.md")


def test_a_missing_file_names_the_close_match_in_a_subfolder_never_one_outside(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "sales").mkdir(parents=True)
    (ws / "sales" / "totals.txt").write_text("384")
    (tmp_path / "total.txt").write_text("outside")  # next to the workspace: never suggested
    os.symlink(tmp_path, ws / "link")  # a link out is not walked
    tools = {t.name: t for t in build_tools(["read_file"], ToolContext(workspace=ws))}
    out = invoke_tool(tools["read_file"], {"path": "total.txt"}, timeout_s=5)
    assert not out.ok and "did you mean 'sales/totals.txt'?" in out.error and "link" not in out.error
    out = invoke_tool(tools["read_file"], {"path": "nothing-like-it.md"}, timeout_s=5)
    assert "call list_files" in out.error
