"""`utskick schema`: the JSON Schema of newsletter.yaml or of an issue, for editors' tools.

Its own module so that the schema's command line stays apart from the issue commands; it
registers itself on `cli` when imported.
"""

from __future__ import annotations

from pathlib import Path

import click

from .. import schema as schemas
from ..errors import display_path
from ..files import write_atomic
from . import cli, guarded


@cli.command("schema")
@click.argument("kind", type=click.Choice(schemas.KINDS))
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Write it to this file (UTF-8) instead of standard output.")
@guarded
def schema_command(kind: schemas.Kind, output: Path | None) -> None:
    """Print the JSON Schema (draft 2020-12) of newsletter.yaml (settings) or of an issue.

    Editors using the YAML language server (VS Code with Red Hat's YAML extension) complete
    field names and underline mistakes from it. `utskick init` writes both into schemas/;
    `check` warns when those copies are older than this utskick's.
    """
    if output is None:
        click.echo(schemas.text(kind), nl=False)
        return
    write_atomic(output, schemas.text(kind))
    click.echo(f"wrote {display_path(output)}")
