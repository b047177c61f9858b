"""A running preview of a test project, shared by the preview tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from utskick import signer
from utskick.preview import Preview, PreviewServer, View, serving
from utskick.project import load_project
from utskick.signer import Signer
from utskick.subscribers import SAMPLE, Subscriber

ISSUE = "2026-12"
SUBJECT = "Nytt från Sjölandet – december 2026"


@contextmanager
def previewing(project: Path, subscriber: Subscriber = SAMPLE,
               signing: Signer | None = None) -> Iterator[tuple[Preview, PreviewServer]]:
    """The preview of the December issue on a free port, stopped (threads and socket) on exit;
    the sample subscriber's links are signed with the sample key, as `utskick preview` does."""
    preview = Preview(load_project(project / "newsletter.yaml"), project / "issues" / f"{ISSUE}.yaml", subscriber,
                      signing or signer.sample())
    with serving(preview, 0) as server:
        yield preview, server


def edit(path: Path, old: str, new: str) -> None:
    """Change a file the way an editor saves it in place."""
    text = path.read_text("utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), "utf-8")


def until(preview: Preview, done: Callable[[View], bool], timeout: float = 10.0) -> View:
    """The view once `done` holds for it; fails when `timeout` passes without any refresh."""
    seen = preview.view.version
    while not done(preview.view):
        new = preview.wait(seen, timeout)
        assert new != seen, f"no refresh within {timeout} s"
        seen = new
    return preview.view
