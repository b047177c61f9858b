"""Load, validate and de-duplicate a 100,000-row list: utskick beside the plain approaches.

    python bench/subscribers.py [ROWS]

Writes a realistic export (UTF-8 with BOM, semicolons, CRLF; some upper case, duplicates,
international domains and typos) to a temp folder and runs each way in its own process, so each
peak memory (maximum resident set size) is its own:

- utskick: `recipients()`, the function `send` calls: read, validate, de-duplicate, suppress,
  sign an unsubscribe token for everyone;
- baseline: the same file with email-validator called on every row, de-duplicated in a dict;
- csv only: just reading the rows, the floor nobody can go below.
"""

from __future__ import annotations

import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KOMMUNER = ["Björkvik", "Storvik", "Ekeby", "Lindås", "Granholm", "Trollhättan", "Åre", "Östersund"]
FIRST = ["Anna", "Lars", "Maria", "Johan", "Eva", "Per", "Karin", "Erik", "Åsa", "Örjan"]
ASCII = str.maketrans("åäöÅÄÖ", "aaoAAO")
LAST = ["Lind", "Sund", "Åkesson", "Öberg", "Nilsson", "Östlund", "Berg", "Holm"]


def write_list(path: Path, rows: int) -> None:
    rng = random.Random(4)
    lines = ["e-post;namn;kommun;roll"]
    for i in range(rows):
        first, last, kommun = rng.choice(FIRST), rng.choice(LAST), rng.choice(KOMMUNER)
        address = f"{first.lower()}.{last.lower()}{i}@{kommun.lower()}.example".translate(ASCII)
        roll = rng.random()
        if roll < 0.01:
            address = lines[rng.randrange(1, len(lines))].split(";")[0].upper() if i else address
        elif roll < 0.02:
            address = f"{first}.{last}{i}@{kommun}.se"  # international: åre.se, ...
        elif roll < 0.025:
            address = address.replace("@", "@@")
        elif roll < 0.03:
            address = f"{first.upper()}.{last}{i}@Exempel.SE "
        lines.append(f"{address};{first} {last};{kommun};Handläggare")
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8") + b"\r\n")


def measure(way: str, project: Path) -> dict[str, float]:
    import csv

    from email_validator import EmailNotValidError, validate_email

    from utskick.project import load_project
    from utskick.subscribers import recipients

    path = project / "subscribers" / "stor.csv"
    start = time.perf_counter()
    if way == "utskick":
        found = recipients(load_project(project / "newsletter.yaml"), ["stor"])
        count = len(found.subscribers)
    elif way == "baseline":
        seen: dict[str, dict[str, str]] = {}
        with path.open(encoding="utf-8-sig", newline="") as f:
            for row in csv.DictReader(f, delimiter=";"):
                try:
                    # The same rules as utskick: no SMTPUTF8 (non-ASCII before the @).
                    r = validate_email(row["e-post"].strip(), check_deliverability=False, allow_smtputf8=False)
                except EmailNotValidError:
                    continue
                seen.setdefault((r.ascii_email or r.normalized).lower(), row)
        count = len(seen)
    elif way == "csv only":
        with path.open(encoding="utf-8-sig", newline="") as f:
            count = sum(1 for _ in csv.reader(f, delimiter=";"))
    else:  # idle: the interpreter with every import, nothing read
        count = 0
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "count": count, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    if sys.argv[1:2] == ["--measure"]:
        print(json.dumps(measure(sys.argv[2], Path(sys.argv[3]))))
        return
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        shutil.copyfile(ROOT / "newsletter.yaml", project / "newsletter.yaml")
        (project / "subscribers").mkdir()
        (project / "subscribers" / "unsubscribed.csv").write_text("email\nlars.sund1@storvik.example\n")
        write_list(project / "subscribers" / "stor.csv", rows)
        env = {"UTSKICK_SECRET": "bench-secret-0123456789", "PATH": ""}
        results = {}
        for way in ("idle", "csv only", "utskick", "baseline"):
            out = subprocess.run([sys.executable, __file__, "--measure", way, str(project)],
                                 check=True, capture_output=True, text=True, env=env).stdout
            results[way] = json.loads(out)
    idle = results["idle"]["rss_mb"]
    print(f"{rows:,} rows, Python {sys.version.split()[0]}")
    print(f"{'':10} {'seconds':>8} {'µs/row':>7} {'peak RSS':>9} {'above idle':>11} {'addresses':>10}")
    for way in ("utskick", "baseline", "csv only"):
        r = results[way]
        print(f"{way:10} {r['seconds']:8.2f} {r['seconds'] / rows * 1e6:7.1f} {r['rss_mb']:7.0f} MB"
              f" {r['rss_mb'] - idle:8.0f} MB {int(r['count']):10,}")
    print(f"speed-up over the baseline: {results['baseline']['seconds'] / results['utskick']['seconds']:.0f}x")


if __name__ == "__main__":
    main()
