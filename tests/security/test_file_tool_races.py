"""File tools cannot be led outside the working directory by hard links or by a symlink
swapped in after the check (issue 13, class "file-tool races")."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import trio

from rho_actors import ToolContext, ToolDenied, load_profile
from rho_actors.tools import EditTool, GlobTool, GrepTool, ListTool, ReadTool, WriteTool


def _ctx(work: Path) -> ToolContext:
    return ToolContext(session_id="s", call_id="c", working_dir=work)


def _layout(tmp_path: Path) -> tuple[Path, Path]:
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    return work, outside


async def test_a_hard_link_to_an_outside_file_is_not_changed(tmp_path: Path) -> None:
    """edit and write refuse a file with another name; unconfined, the same edit works."""
    work, outside = _layout(tmp_path)
    target = outside / "config.txt"
    target.write_text("setting = safe\n")
    os.link(target, work / "innocent.txt")
    developer = load_profile("developer")
    edit = await EditTool(developer).handle(
        {"path": "innocent.txt", "old_string": "safe", "new_string": "owned"}, _ctx(work)
    )
    write = await WriteTool(developer).handle(
        {"path": "innocent.txt", "content": "owned\n"}, _ctx(work)
    )
    assert edit.is_error and "hard links" in edit.content
    assert write.is_error and "hard links" in write.content
    assert target.read_text() == "setting = safe\n"
    # The control: without confinement the edit goes through (to the outside file).
    done = await EditTool(load_profile("unrestricted")).handle(
        {"path": "innocent.txt", "old_string": "safe", "new_string": "owned"}, _ctx(work)
    )
    assert not done.is_error and target.read_text() == "setting = owned\n"


_SWAPPER = """
import os, sys, time
work, outside = sys.argv[1], sys.argv[2]
sub, parked = os.path.join(work, "sub"), os.path.join(work, "parked")
end = time.time() + 60
while time.time() < end and not os.path.exists(os.path.join(work, "STOP")):
    try:
        os.rename(sub, parked)
        os.symlink(outside, sub)
        os.unlink(sub)
        os.rename(parked, sub)
    except OSError:
        if os.path.islink(sub):
            os.unlink(sub)
        if os.path.exists(parked) and not os.path.exists(sub):
            os.rename(parked, sub)
"""


async def test_a_directory_swapped_for_a_symlink_never_leads_outside(tmp_path: Path) -> None:
    """While another process keeps swapping sub/ for a symlink to outside/, 1,000 writes to
    sub/... land inside or fail; none lands outside. (With a plain open after the check,
    some land outside.)"""
    work, outside = _layout(tmp_path)
    (work / "sub").mkdir()
    swapper = await trio.lowlevel.open_process(
        [sys.executable, "-c", _SWAPPER, str(work), str(outside)]
    )
    try:
        tool = WriteTool(load_profile("developer"))
        for i in range(1000):
            await tool.handle({"path": f"sub/f{i}.txt", "content": "x"}, _ctx(work))
    finally:
        (work / "STOP").touch()
        with trio.fail_after(30):
            await swapper.wait()
    assert list(outside.iterdir()) == []
    # The control: a symlink that stays put does lead outside for an unconfined profile.
    os.symlink(outside, work / "out")
    done = await WriteTool(load_profile("unrestricted")).handle(
        {"path": "out/escaped.txt", "content": "x"}, _ctx(work)
    )
    assert not done.is_error and (outside / "escaped.txt").exists()


def test_the_open_itself_follows_no_symlink(tmp_path: Path) -> None:
    """The mechanism, deterministically: the race window between a tool's check and its
    open cannot be hit on demand through the tool, so the open is tested as the swap would
    find it (a symlink where the check saw a directory)."""
    from rho_actors._paths import open_beneath

    work, outside = _layout(tmp_path)
    os.symlink(outside, work / "sub")
    with pytest.raises(ToolDenied, match="symlink"):
        open_beneath(work, work / "sub" / "f.txt", os.O_WRONLY | os.O_CREAT)
    os.symlink(outside / "target.txt", work / "file-link")
    with pytest.raises(ToolDenied, match="symlink"):
        open_beneath(work, work / "file-link", os.O_WRONLY | os.O_CREAT)
    assert list(outside.iterdir()) == []


async def test_reading_tools_never_see_outside_while_a_directory_is_swapped(
    tmp_path: Path,
) -> None:
    """read, list, glob and grep (both engines) open what they checked, through
    descriptors: with sub/ swapped for a symlink to outside/ all the while, 150 rounds
    of each never show outside's file. Reads may fail; none leaks."""
    work, outside = _layout(tmp_path)
    (work / "sub").mkdir()
    (work / "sub" / "inside.txt").write_text("nothing here\n")
    (outside / "secret.txt").write_text("TOPSECRET\n")
    profile = load_profile("readonly")
    calls = [
        (ReadTool(profile), {"path": "sub/secret.txt"}),
        (ListTool(profile), {"path": "sub"}),
        (GlobTool(profile), {"pattern": "**/*.txt", "path": "sub"}),
        (GrepTool(profile), {"pattern": "TOP", "path": "sub"}),
        (GrepTool(profile, use_ripgrep=False), {"pattern": "TOP", "path": "sub"}),
    ]
    swapper = await trio.lowlevel.open_process(
        [sys.executable, "-c", _SWAPPER, str(work), str(outside)]
    )
    seen: list[str] = []
    try:
        for _ in range(150):
            for tool, args in calls:
                try:
                    out = await tool.handle(args, _ctx(work))
                except ToolDenied:
                    continue
                # read's own error messages name the path it was asked for
                seen.append(out.content if tool.name != "read" else "")
                if "TOPSECRET" in out.content:
                    seen.append(out.content)
    finally:
        (work / "STOP").touch()
        with trio.fail_after(30):
            await swapper.wait()
    assert not [text for text in seen if "secret.txt" in text or "TOPSECRET" in text]
    # The control: unconfined, a symlink that stays put shows outside's file.
    os.symlink(outside, work / "out")
    done = await ReadTool(load_profile("unrestricted")).handle(
        {"path": "out/secret.txt"}, _ctx(work)
    )
    assert "TOPSECRET" in done.content


def test_reads_open_beneath_the_working_directory(tmp_path: Path) -> None:
    """The read-side mechanism, deterministically: a symlink where the check saw a
    directory makes the open fail."""
    from rho_actors._paths import open_checked

    work, outside = _layout(tmp_path)
    (outside / "secret.txt").write_text("x")
    os.symlink(outside, work / "sub")
    with pytest.raises(ToolDenied, match="symlink"):
        open_checked(work / "sub" / "secret.txt", work, os.O_RDONLY, confine=True)
    with pytest.raises(ToolDenied, match="symlink"):
        open_checked(work / "sub", work, os.O_RDONLY | os.O_DIRECTORY, confine=True)
