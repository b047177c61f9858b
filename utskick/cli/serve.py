"""`serve`: run the one-click unsubscribe service (see `receiver`) until stopped."""

from __future__ import annotations

import socket
from pathlib import Path

import click

from .. import signer
from ..errors import Problem, UtskickError, display_path
from . import Context, cli, guarded, report


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; keep the loopback default behind a reverse proxy on the same machine.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port to listen on (0 picks a free one).")
@click.option("--store", type=click.Path(path_type=Path, dir_okay=False),
              help="SQLite file of the recorded requests (default: .utskick/receiver.db beside the settings).")
@click.pass_obj
@guarded
def serve(obj: Context, host: str, port: int, store: Path | None) -> None:
    """Answer the unsubscribe link of unsubscribe.url, behind the federation's HTTPS, until Ctrl-C.

    GET shows a page with one button and changes nothing (link scanners fetch every link);
    a one-click POST (RFC 8058) or the button records the token. Only opaque tokens and times
    are stored, never an address: this folder needs only newsletter.yaml and the same
    UTSKICK_SECRET as where you send. Bring the requests in with `utskick unsubscribe --pull`.
    """
    import uvicorn

    from .. import receiver
    from ..pull import pull_path, unsubscribe_path

    project = obj.project()
    app = receiver.app_for(project, store)
    report(signer.problems(project.state_dir))
    try:
        sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as e:
        raise UtskickError(Problem(f"cannot listen on {host}:{port}: {e.strerror or e}", where="--host/--port")) from None
    url = project.settings.unsubscribe.url
    assert url is not None
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"Serving {unsubscribe_path(url)} (pull: {pull_path(url)}, health: /healthz) at "
               f"http://{shown}:{bound}, store {display_path(receiver.store_path(project, store))} (Ctrl-C to stop)")
    # No access log: it would hold every token; the reverse proxy keeps its own.
    config = uvicorn.Config(app, access_log=False, log_level="warning", server_header=False, proxy_headers=False,
                            limit_concurrency=64, timeout_keep_alive=5, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
