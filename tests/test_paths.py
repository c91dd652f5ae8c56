"""Path confinement: file tools stay inside the working directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rho_actors._errors import InvalidToolArguments, ToolDenied
from rho_actors._paths import resolve_in_workdir


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """A working directory and a sibling directory outside it."""
    work = tmp_path / "work"
    outside = tmp_path / "outside"
    (work / "src").mkdir(parents=True)
    outside.mkdir()
    (work / "src" / "a.py").write_text("a")
    (outside / "secret.txt").write_text("s")
    return work, outside


def test_relative_path_inside(layout: tuple[Path, Path]) -> None:
    """A plain relative path resolves inside the working directory."""
    work, _ = layout
    assert resolve_in_workdir("src/a.py", work, confine=True) == work.resolve() / "src/a.py"


def test_dot_is_the_working_directory(layout: tuple[Path, Path]) -> None:
    """'.' names the working directory itself, which is allowed."""
    work, _ = layout
    assert resolve_in_workdir(".", work, confine=True) == work.resolve()


def test_dotdot_that_stays_inside_is_fine(layout: tuple[Path, Path]) -> None:
    """'..' is judged by where it ends up, not refused on sight."""
    work, _ = layout
    assert resolve_in_workdir("src/../src/a.py", work, confine=True) == work.resolve() / "src/a.py"


@pytest.mark.parametrize("path", ["..", "../outside/secret.txt", "src/../../outside", "a/../../x"])
def test_dotdot_escape_is_denied(layout: tuple[Path, Path], path: str) -> None:
    """Climbing out with '..' is refused and the message says so."""
    work, _ = layout
    with pytest.raises(ToolDenied, match=r"escapes the working directory .* via '\.\.'"):
        resolve_in_workdir(path, work, confine=True)


def test_absolute_path_outside_is_denied(layout: tuple[Path, Path]) -> None:
    """An absolute path elsewhere is refused as such."""
    work, outside = layout
    with pytest.raises(ToolDenied, match=r"absolute path .* outside the working directory"):
        resolve_in_workdir(str(outside / "secret.txt"), work, confine=True)
    with pytest.raises(ToolDenied, match="absolute path"):
        resolve_in_workdir("/etc/passwd", work, confine=True)


def test_absolute_path_inside_is_allowed(layout: tuple[Path, Path]) -> None:
    """An absolute path that points into the working directory is fine."""
    work, _ = layout
    target = work / "src" / "a.py"
    assert resolve_in_workdir(str(target), work, confine=True) == target.resolve()


def test_symlinked_directory_escape_is_denied(layout: tuple[Path, Path]) -> None:
    """A symlink inside the tree that points outside cannot be used to read out."""
    work, outside = layout
    (work / "link").symlink_to(outside)
    with pytest.raises(ToolDenied, match="symlink that leads outside"):
        resolve_in_workdir("link/secret.txt", work, confine=True)


def test_symlinked_file_escape_is_denied(layout: tuple[Path, Path]) -> None:
    """A file symlink to an outside file is refused."""
    work, outside = layout
    (work / "s.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(ToolDenied, match="symlink"):
        resolve_in_workdir("s.txt", work, confine=True)


def test_new_file_under_escaping_symlink_is_denied(layout: tuple[Path, Path]) -> None:
    """A not-yet-existing file is judged by its parent's real location."""
    work, outside = layout
    (work / "link").symlink_to(outside)
    with pytest.raises(ToolDenied, match="symlink"):
        resolve_in_workdir("link/new/deeper/file.txt", work, confine=True)


def test_dangling_symlink_pointing_outside_is_denied(layout: tuple[Path, Path]) -> None:
    """Writing through a dangling symlink would create its target: judged by the target."""
    work, outside = layout
    (work / "dangling").symlink_to(outside / "does-not-exist")
    with pytest.raises(ToolDenied):
        resolve_in_workdir("dangling", work, confine=True)


def test_symlink_inside_is_followed(layout: tuple[Path, Path]) -> None:
    """Symlinks that stay inside resolve to their real path."""
    work, _ = layout
    (work / "alias").symlink_to(work / "src")
    assert resolve_in_workdir("alias/a.py", work, confine=True) == work.resolve() / "src/a.py"


def test_working_dir_through_symlink(tmp_path: Path, layout: tuple[Path, Path]) -> None:
    """A working directory reached through a symlink still contains its own files."""
    work, _ = layout
    via = tmp_path / "via"
    via.symlink_to(work)
    assert resolve_in_workdir("src/a.py", via, confine=True) == work.resolve() / "src/a.py"


def test_not_confined_allows_anything(layout: tuple[Path, Path]) -> None:
    """Without confinement, outside paths resolve normally."""
    work, outside = layout
    result = resolve_in_workdir("../outside/secret.txt", work, confine=False)
    assert result == (outside / "secret.txt").resolve()


@pytest.mark.parametrize("path", ["", "a\x00b"])
def test_invalid_paths(layout: tuple[Path, Path], path: str) -> None:
    """Empty paths and NUL bytes are invalid arguments, not denials."""
    work, _ = layout
    with pytest.raises(InvalidToolArguments):
        resolve_in_workdir(path, work, confine=True)


def test_prefix_sibling_is_not_inside(tmp_path: Path) -> None:
    """'/x/work2' is not inside '/x/work' even though the string starts the same."""
    work = tmp_path / "work"
    sibling = tmp_path / "work2"
    work.mkdir()
    sibling.mkdir()
    with pytest.raises(ToolDenied):
        resolve_in_workdir(os.fspath(sibling / "f"), work, confine=True)
