"""What `utskick build` writes: the email as a fictional sample reader gets it, to open in a
browser or a mail client, and its calendar files to upload beside the web version.

The files are made here and written by `files.write_tree`, the writer `publish` uses too, so
the command line only asks and prints. Nothing of a real member is ever in them: the sample's
links are signed with the sample key.
"""

from __future__ import annotations

from . import signer
from .message import MessageTemplate, personalise
from .render import Rendered
from .subscribers import SAMPLE


def files(rendered: Rendered) -> dict[str, bytes]:
    """Each file by name: SLUG.html, .txt and .eml, then the .ics files when it has events."""
    sample = signer.sample()
    personal = personalise(rendered, SAMPLE, sample)
    out = {
        f"{rendered.slug}.html": personal.html.encode(),
        f"{rendered.slug}.txt": personal.text.encode(),
        f"{rendered.slug}.eml": MessageTemplate.of(rendered, sample).message_for(SAMPLE),
    }
    out.update({a.filename: a.data for a in rendered.attachments})
    out.update(rendered.web_files)
    return out
