"""`publish`: write the site the emails link to (see `utskick.publish`)."""

from __future__ import annotations

from pathlib import Path

import click

from .. import publish as site
from ..errors import display_path
from ..files import write_tree
from . import Context, cli, guarded, report


@cli.command()
@click.argument("issues", nargs=-1, metavar="[ISSUE]...")
@click.option("-o", "--output", type=click.Path(path_type=Path, file_okay=False),
              help="Folder to write the site to (default: site/ beside the settings).")
@click.pass_obj
@guarded
def publish(obj: Context, issues: tuple[str, ...], output: Path | None) -> None:
    """Write the web version of every issue in issues/ (or of each ISSUE) as a static site.

    SLUG.html is the issue as an accessible web page without anything personal, with its images
    in images/ and its events as SLUG.ics and SLUG-1.ics, SLUG-2.ics …; SLUG.fragment.html is the
    content alone, to paste into a CMS; index.html lists the issues by year and feed.xml is an
    Atom feed of them. Upload the folder where web_version points: the emails' "Visa i
    webbläsare" and "Lägg till i kalender" links lead there. The same input gives the same bytes.
    """
    project = obj.project()
    files, warnings = site.site(project, issues)
    report(warnings)
    out = output or project.root / "site"
    for path in write_tree(out, files, site.FILE_MODE):
        click.echo(f"wrote {display_path(path)} ({path.stat().st_size / 1024:.1f} KB)")
