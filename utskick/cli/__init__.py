"""The commands; the only package that prints or exits.

`cli` and the issue commands (check, build, init, new, preview) live here; every other command
in a module of its own, imported only when that command runs (or `--help` lists them all):
start-up is most of a command's time, and `build` should not pay for dnspython, rich or msal.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from datetime import date as Date
from pathlib import Path
from typing import Any, Callable, NoReturn

import click
import yaml

from .. import schema as schemas
from .. import subscribers as subs
from ..errors import Problem, UtskickError, display_path
from ..files import bundled, write_atomic, write_tree
from ..load import Document, load_issue, slug_of
from ..project import Project, load_project
from ..build import files as build_files
from ..model import Issue
from ..render import Rendered, render
from ..subscribers import SAMPLE
from .. import signer

# Each command defined outside this module, and the module that defines it.
COMMAND_MODULES = {
    "doctor": "doctor", "inbox": "inbox", "lists": "list_commands", "unsubscribe": "list_commands",
    "login": "login", "publish": "publish", "schema": "schema", "send": "sending", "status": "sending",
    "serve": "serve",
}


class LazyGroup(click.Group):
    """Imports a command's module when the command is looked up (click's documented pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMAND_MODULES})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            importlib.import_module(f"{__name__}.{COMMAND_MODULES[cmd_name]}")  # registers it on `cli`
        return self.commands.get(cmd_name)


@dataclass
class Context:
    config: Path | None

    def project(self) -> Project:
        return load_project(self.config)


def fail(problems: list[Problem]) -> NoReturn:
    for p in problems:
        click.echo(str(p), err=True)
    errors = sum(1 for p in problems if p.is_error)
    click.echo(f"{errors} error(s), {len(problems) - errors} warning(s)", err=True)
    sys.exit(1)


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Our errors, and any file system error, become located messages and exit 1; Ctrl-C exits
    130; never a traceback."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UtskickError as e:
            fail(e.problems)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except OSError as e:  # the last net: the file system failed where nothing else looked
            fail([Problem(e.strerror or str(e), Path(os.fsdecode(e.filename)) if e.filename else None)])

    return wrapper


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", type=click.Path(path_type=Path, dir_okay=False),
              help="Settings file (default: newsletter.yaml in the current folder). "
                   "Every relative path is relative to its folder.")
@click.version_option(package_name="utskick")
@click.pass_context
def cli(ctx: click.Context, config: Path | None) -> None:
    """utskick: write a newsletter issue in YAML, check it, preview it, build it and send it."""
    ctx.obj = Context(config)


def load_rendered(project: Project, issue: str) -> tuple[Document[Issue], Rendered]:
    doc = load_issue(project.issue_path(issue))
    return doc, render(project, doc)


@cli.command()
@click.argument("issue")
@click.option("--list", "lists", multiple=True, metavar="NAME", help="Also check this list (repeatable).")
@click.pass_obj
@guarded
def check(obj: Context, issue: str, lists: tuple[str, ...]) -> None:
    """Validate the settings and ISSUE (a path or a slug such as 2024-05) and render it.

    Prints every problem as FILE:LINE:COL: error|warning: message. Exit 0 when there are no
    errors (warnings do not fail), 1 otherwise.
    """
    from .. import publish

    project = obj.project()
    doc, rendered = load_rendered(project, issue)
    problems = list(rendered.problems) + signer.problems(project.state_dir) + schemas.stale_copies(project.root)
    problems += publish.layout_problems(project)
    if lists or doc.model.lists:
        problems += subs.check_lists(project, lists or doc.model.lists, rendered.fields, required=bool(lists))
    report(problems)
    size = rendered.html_size
    click.echo(f"{display_path(doc.path)}: ok ({len(problems)} warning(s); HTML {size / 1024:.0f} KB)")


@cli.command()
@click.argument("issue")
@click.option("-o", "--output", type=click.Path(path_type=Path, file_okay=False),
              help="Folder to write to (default: build/ beside the settings).")
@click.pass_obj
@guarded
def build(obj: Context, issue: str, output: Path | None) -> None:
    """Write the email of ISSUE as .html, .txt and .eml, and .ics files when it has events.

    SLUG.ics holds every event (it is also attached to the email); SLUG-1.ics, SLUG-2.ics … hold
    one event each, in calendar order, to publish beside the web version for the
    "Lägg till i kalender" links.

    Personalised for a fictional sample subscriber: nothing of a real member is ever written here.
    """
    project = obj.project()
    doc, rendered = load_rendered(project, issue)
    report(list(rendered.problems))
    files = build_files(rendered)
    for path, data in zip(write_tree(output or project.build_dir, files), files.values()):
        click.echo(f"wrote {display_path(path)} ({len(data) / 1024:.1f} KB)")


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False), default=".")
@guarded
def init(directory: Path) -> None:
    """Create a project folder with example settings, an issue and a list in DIRECTORY.

    For the editor it also writes schemas/newsletter.schema.json, schemas/issue.schema.json and
    .vscode/settings.json mapping them ("yaml.schemas"), and starts each YAML file with a
    "# yaml-language-server: $schema=…" line: VS Code with Red Hat's YAML extension (and any
    editor using the YAML language server) then completes fields and underlines mistakes.
    """
    target = directory / "newsletter.yaml"
    if target.exists():
        raise UtskickError(Problem("already exists; not overwriting", target))
    # From a checkout (or an editable install) the example is the repository root itself.
    source = bundled("utskick.example", Path(__file__).resolve().parents[2], "newsletter.yaml")
    latest = max((source / "issues").glob("*.yaml"), default=None)
    if latest is None or not (source / "newsletter.yaml").is_file():
        raise UtskickError(Problem("the bundled example is missing from this installation: reinstall utskick", source))
    issue = directory / "issues" / latest.name
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # Each YAML file names its schema, so the editor completes and checks it while typing.
        write_atomic(target, schemas.with_modeline((source / "newsletter.yaml").read_text("utf-8"), target, directory, "settings"))
        # Subscriber lists are personal data (GDPR): keep them, and what send leaves behind, out of git.
        write_atomic(directory / ".gitignore", "subscribers/*.csv\nsubscribers/.*.lock\nbuild/\noutbox/\n.utskick/\n")
        for sub in ("issues", "subscribers"):
            (directory / sub).mkdir(exist_ok=True)
        write_atomic(issue, schemas.with_modeline(latest.read_text("utf-8"), issue, directory, "issue"))
        schemas.write_copies(directory)
        _vscode_settings(directory)
        shutil.copytree(source / "issues" / "bilder", directory / "issues" / "bilder", dirs_exist_ok=True)
        shutil.copyfile(source / "subscribers" / "medlemmar.csv", directory / "subscribers" / "medlemmar.csv")
    except OSError as e:
        where = Path(e.filename) if e.filename else directory
        raise UtskickError(Problem(f"cannot create the project: {e.strerror or e}", where)) from None
    click.echo(f"created {display_path(target)}; try: utskick --config {display_path(target)} build {latest.stem}")


def _vscode_settings(directory: Path) -> None:
    """VS Code's workspace settings mapping the schemas (Red Hat's YAML extension); an existing
    file is the user's and is left alone."""
    path = directory / ".vscode" / "settings.json"
    mapping = {f"./{schemas.FOLDER}/{schemas.FILES['settings']}": "newsletter.yaml",
               f"./{schemas.FOLDER}/{schemas.FILES['issue']}": "issues/*.yaml"}
    if path.exists():
        click.echo(f"kept {display_path(path)} as it is; add to it: \"yaml.schemas\": {json.dumps(mapping)}")
        return
    write_atomic(path, json.dumps({"yaml.schemas": mapping}, indent=2) + "\n")


def next_issue(previous: dict[str, Any], today: Date) -> dict[str, Any]:
    """The next issue from the latest one: its shape kept, its dated and written content cleared."""
    sections = [
        {**({"title": s["title"]} if s.get("title") else {}),
         "articles": [{"title": "Rubrik", "body": "Text."}]}
        for s in previous.get("sections") or [{}]
    ]
    issue: dict[str, Any] = {"subject": f"{previous.get('title') or previous.get('subject', 'Nyhetsbrev')}", "date": today.isoformat()}
    for key in ("title", "lists"):
        if previous.get(key):
            issue[key] = previous[key]
    issue["sections"] = sections
    if previous.get("calendar") is not None:
        cal = {k: v for k, v in previous["calendar"].items() if k in ("title", "intro", "more")}
        issue["calendar"] = {**cal, "events": []}
    return issue


def _readable_issues(project: Project) -> list[Document[Issue]]:
    """Every issue that loads: one broken draft must not stop `new` from finding the latest."""
    docs = []
    for path in project.issues():
        try:
            docs.append(load_issue(path))
        except UtskickError:
            continue
    return docs


@cli.command()
@click.argument("slug", required=False)
@click.pass_obj
@guarded
def new(obj: Context, slug: str | None) -> None:
    """Start the next issue (default slug: this month, e.g. 2026-12) from the latest one."""
    project = obj.project()
    today = Date.today()
    slug = slug or today.strftime("%Y-%m")
    target = project.issues_dir / f"{slug}.yaml"
    slug_of(target)
    if target.exists():
        raise UtskickError(Problem("already exists; not overwriting", target))
    previous: dict[str, Any] = {}
    latest = max(_readable_issues(project), key=lambda doc: (doc.model.date, doc.path.name), default=None)
    if latest is not None:
        previous = latest.model.model_dump(by_alias=True, exclude_none=True, mode="json")
    text = yaml.safe_dump(next_issue(previous, today), allow_unicode=True, sort_keys=False)
    write_atomic(target, schemas.with_modeline(text, target, project.root, "issue"))
    click.echo(f"created {display_path(target)}")
    if not schemas.path(project.root, "issue").exists():  # a project from before schemas: its copies too
        for written in schemas.write_copies(project.root):
            click.echo(f"wrote {display_path(written)}")


@cli.command()
@click.argument("issue")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port on 127.0.0.1 (0 picks a free one).")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the web browser.")
@click.option("--as", "address", metavar="ADDRESS",
              help="Preview the message this subscriber gets (default: a fictional sample subscriber).")
@click.pass_obj
@guarded
def preview(obj: Context, issue: str, port: int, open_browser: bool, address: str | None) -> None:
    """Serve a live preview of ISSUE that follows every save, until Ctrl-C.

    Shows the email as sent (desktop, phone and plain text), the inbox line, the size against
    Gmail's clip and the problems `check` reports; a broken save shows where the error is.
    """
    import threading
    import webbrowser

    from ..preview import Preview, serving

    project = obj.project()
    path = project.issue_path(issue)
    if not path.is_file():
        raise UtskickError(Problem("file not found", path))
    # A real subscriber's link is signed with the real secret; the sample's with the sample key.
    subscriber, signing = (subs.find(project, address), signer.load(project.state_dir)) if address else (SAMPLE, signer.sample())
    with serving(Preview(project, path, subscriber, signing), port) as server:
        click.echo(f"Previewing {display_path(path)} at {server.url} (Ctrl-C to stop)")
        if open_browser:
            webbrowser.open(server.url)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            click.echo("stopped")
            sys.exit(130)  # as every command stopped by Ctrl-C (README: Exit codes)

def report(problems: list[Problem]) -> None:
    """Warnings are printed and pass; any error fails the command with a count."""
    if any(p.is_error for p in problems):
        fail(problems)
    for p in problems:
        click.echo(str(p), err=True)


def main() -> NoReturn:
    """Run one command, then exit without tearing the interpreter down: by then everything is
    written and closed (every file through `write_atomic`, the journal by its `with`), and
    unwinding the objects of the imported libraries took 0.2 s, a fifth of a `build`."""
    try:
        cli(prog_name="utskick")
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

