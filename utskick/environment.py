"""Environment variables, read one way everywhere: a variable set to nothing is not set.

`UTSKICK_SMTP_URL=` in a shell, an env file or a systemd unit is how people switch a value off;
each caller deciding for itself what an empty URL or secret means is how one of them would end
up reading "" as a secret or a relay.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


def variable(name: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """The value of `name`, or None when it is unset, empty or only spaces."""
    value = environ.get(name, "")
    return value if value.strip() else None
