"""Send benchmark: utskick against the office baseline and the socket ceiling, side by side.

    python bench/send.py [--recipients 20000] [--concurrency 8] [--only a,b,c] [--rtt MS] [--before DIR]

Sends personalised messages of the largest example issue to Postfix's `smtp-sink` on
127.0.0.1 and prints messages/s, MB/s and peak memory (max RSS of the process doing the work):

  (a) `utskick send` as a user runs it: a subprocess with journal, rate limiter (unset) and
      progress bar, startup and the one-off render included;
  (a2) the same, to an smtp-sink that does not offer PIPELINING (`smtp-sink -p`): four round
      trips a message instead of two;
  (b) the baseline an office writes today: one `EmailMessage` per recipient, sent with
      `smtplib` over one connection, sequentially;
  (c) the ceiling: one prebuilt message's bytes written over N plain sockets doing utskick's own
      exchange at its best (MAIL+RCPT+DATA in one write, wait, the content, wait), no
      personalisation at all.

`--rtt MS` puts bench/latency_proxy.py between every client and smtp-sink, adding MS
milliseconds in each direction (a relay far away); it then runs a,a2,c on 2,000 recipients
unless told otherwise. `--before DIR` also runs (a) with the utskick of another checkout (the
version before a change) against the same sink and proxy.

smtp-sink is in Debian's `postfix` package: `apt-get install postfix` (choose "No
configuration"); it is run as `smtp-sink -u nobody 127.0.0.1:PORT 256` and discards everything.
aiosmtpd is no benchmark sink: it saturates near 170 msg/s and measures itself.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ISSUE = "2026-12"
SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_project(folder: Path, recipients: int, concurrency: int) -> Path:
    """The example project with a fictional list of `recipients` members and no rate limit."""
    for name in ("newsletter.yaml",):
        shutil.copyfile(ROOT / name, folder / name)
    shutil.copytree(ROOT / "issues", folder / "issues")
    shutil.copytree(ROOT / "subscribers", folder / "subscribers")
    settings = folder / "newsletter.yaml"
    text = settings.read_text("utf-8").replace("  rate: 30/min\n", "").replace("concurrency: 4", f"concurrency: {concurrency}")
    settings.write_text(text, "utf-8")
    issue = folder / "issues" / f"{ISSUE}.yaml"
    issue.write_text(issue.read_text("utf-8").replace("lists: [medlemmar]", "lists: [bench]"), "utf-8")
    with (folder / "subscribers" / "bench.csv").open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["email", "namn", "kommun", "roll"])
        for i in range(recipients):
            w.writerow([f"medlem{i}@kommun{i % 7}.example", f"Medlem {i} Åkesson", "Ekeby", "Handläggare"])
    return folder


def run_child(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int, str, float]:
    """Wall seconds, peak RSS in KB, stderr tail and CPU seconds (user + system) of one child
    process: on a shared machine the CPU seconds move less than the wall time."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = b""
    reader = threading.Thread(target=lambda: None)
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.append(proc.stderr.read() if proc.stderr else b""))
    reader.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    reader.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = b"".join(chunks)
    if proc.returncode != 0:
        sys.exit(f"{args[:4]} failed ({proc.returncode}):\n{err.decode(errors='replace')[-2000:]}")
    return wall, usage.ru_maxrss, err.decode(errors="replace")[-300:], usage.ru_utime + usage.ru_stime


# --- (b) and (c) run in their own child process so their memory is theirs -----------------------


def baseline(project: Path, port: int) -> None:
    """What an office writes: EmailMessage per recipient, smtplib, one connection."""
    import smtplib
    from email.message import EmailMessage

    sys.path.insert(0, str(ROOT))
    os.chdir(project)
    from utskick.cli import load_rendered
    from utskick.project import load_project
    from utskick.message import personalise
    from utskick.signer import sample
    from utskick.subscribers import recipients

    p = load_project()
    _, rendered = load_rendered(p, ISSUE)
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for sub in recipients(p, ["bench"]).subscribers:
            body = personalise(rendered, sub, sample())
            msg = EmailMessage()
            msg["From"] = p.settings.from_
            msg["To"] = f"{sub.name} <{sub.email}>"
            msg["Subject"] = rendered.issue.subject
            msg["List-Unsubscribe"] = f"<{body.unsubscribe_url}>"
            msg.set_content(body.text)
            msg.add_alternative(body.html, subtype="html")
            for image in rendered.images:
                maintype, subtype = image.mime.split("/")
                msg.get_payload()[1].add_related(image.data, maintype, subtype, cid=f"<{image.cid}>",
                                                 filename=image.filename)
            smtp.send_message(msg)


def ceiling(project: Path, port: int, recipients: int, connections: int) -> None:
    """Prebuilt bytes over plain sockets: the most any client could get out of this sink."""
    sys.path.insert(0, str(ROOT))
    os.chdir(project)
    from utskick.cli import load_rendered
    from utskick.project import load_project
    from utskick.message import MessageTemplate
    from utskick.signer import sample
    from utskick.subscribers import SAMPLE

    _, rendered = load_rendered(load_project(), ISSUE)
    payload = MessageTemplate.of(rendered, sample()).message_for(SAMPLE) + b".\r\n"

    def one(share: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as s:
            f = s.makefile("rb")

            def reply() -> bytes:
                while True:
                    line = f.readline()
                    if line[3:4] != b"-":
                        return line

            reply()
            s.sendall(b"EHLO bench\r\n")
            reply()
            for i in range(share):
                s.sendall(f"MAIL FROM:<nyhetsbrev@sjolandet.example>\r\nRCPT TO:<medlem{i}@kommun.example>\r\n"
                          "DATA\r\n".encode())
                reply()
                reply()
                reply()
                s.sendall(payload)
                assert reply().startswith(b"250")
            s.sendall(b"QUIT\r\n")

    shares = [recipients // connections + (1 if i < recipients % connections else 0) for i in range(connections)]
    threads = [threading.Thread(target=one, args=(n,)) for n in shares]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def message_size(project: Path) -> int:
    sys.path.insert(0, str(ROOT))
    cwd = os.getcwd()
    os.chdir(project)
    try:
        from utskick.cli import load_rendered
        from utskick.project import load_project
        from utskick.message import MessageTemplate
        from utskick.signer import sample
        from utskick.subscribers import SAMPLE

        _, rendered = load_rendered(load_project(), ISSUE)
        return len(MessageTemplate.of(rendered, sample()).message_for(SAMPLE))
    finally:
        os.chdir(cwd)


def start_sink(pipelining: bool) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cmd = [SINK] + (["-u", "nobody"] if os.geteuid() == 0 else []) + ([] if pipelining else ["-p"])
    return subprocess.Popen(cmd + [f"127.0.0.1:{port}", "256"]), port


def start_proxy(upstream: int, delay_ms: float) -> tuple[subprocess.Popen[bytes], int]:
    """bench/latency_proxy.py in a process of its own (its work is not the measured one's)."""
    proxy = subprocess.Popen([sys.executable, str(Path(__file__).with_name("latency_proxy.py")), str(upstream),
                              "--delay-ms", str(delay_ms)], stdout=subprocess.PIPE)
    assert proxy.stdout is not None
    return proxy, int(proxy.stdout.readline())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipients", type=int, help="default 20000; 2000 with --rtt")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--only", help="which of a,a2,b,c to run (default a,b,c; a,a2,c with --rtt)")
    ap.add_argument("--rtt", type=float, metavar="MS", help="add MS milliseconds each way through a latency proxy")
    ap.add_argument("--before", type=Path, metavar="DIR", help="also run (a) with the utskick of this checkout")
    ap.add_argument("--child", choices=["baseline", "ceiling"], help=argparse.SUPPRESS)
    ap.add_argument("--project", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "baseline":
        return baseline(args.project, args.port)
    if args.child == "ceiling":
        return ceiling(args.project, args.port, args.recipients, args.concurrency)

    if not os.access(SINK, os.X_OK):
        sys.exit("smtp-sink not found: install Debian's postfix package (apt-get install postfix, "
                 "'No configuration'); it provides /usr/sbin/smtp-sink")
    n = args.recipients or (2_000 if args.rtt else 20_000)
    only = (args.only or ("a,a2,c" if args.rtt else "a,b,c")).split(",") + (["before"] if args.before else [])
    helpers: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp), n, args.concurrency)
        try:
            ports = {}
            for pipelining in (True, False):
                sink, port = start_sink(pipelining)
                helpers.append(sink)
                if args.rtt:
                    proxy, port = start_proxy(port, args.rtt)
                    helpers.append(proxy)
                ports[pipelining] = port
            time.sleep(0.5)
            size = message_size(project)
            where = f"through a proxy adding {args.rtt:g} ms each way" if args.rtt else "on loopback"
            print(f"{n} recipients of issues/{ISSUE}.yaml ({size / 1024:.1f} KB per message) to smtp-sink {where}, "
                  f"concurrency {args.concurrency} for (a) and (c); {os.cpu_count()} CPUs")
            env = {**os.environ, "UTSKICK_SECRET": "bench-secret-not-for-mail", "PYTHONPATH": str(ROOT)}
            port = ports[True]
            send = [sys.executable, "-m", "utskick", "send", ISSUE, "--yes"]
            runs = {
                "a": ("(a) utskick send", send, port),
                "a2": ("(a2) utskick send, no PIPELINING offered", send, ports[False]),
                "b": ("(b) EmailMessage + smtplib, 1 connection",
                      [sys.executable, __file__, "--child", "baseline", "--project", str(project), "--port", str(port)], port),
                "c": (f"(c) prebuilt bytes, {args.concurrency} raw sockets",
                      [sys.executable, __file__, "--child", "ceiling", "--project", str(project), "--port", str(port),
                       "--recipients", str(n), "--concurrency", str(args.concurrency)], port),
                "before": (f"(a) utskick send from {args.before}", send, port),
            }
            results: dict[str, float] = {}
            print(f"{'':44} {'msg/s':>8} {'MB/s':>7} {'peak MB':>8} {'wall s':>7} {'cpu s':>6}")
            for key in only:
                label, cmd, port = runs[key]
                shutil.rmtree(project / ".utskick", ignore_errors=True)  # every run sends to everyone
                child_env = {**env, "UTSKICK_SMTP_URL": f"smtp://127.0.0.1:{port}"}
                if key == "before":
                    child_env["PYTHONPATH"] = str(args.before.resolve())
                wall, rss_kb, _, cpu = run_child(cmd, project, child_env)
                results[key] = n / wall
                print(f"{label:44} {n / wall:8.0f} {n * size / wall / 1e6:7.1f} {rss_kb / 1024:8.0f} {wall:7.1f} {cpu:6.1f}",
                      flush=True)
            ratios = [(f"(a) / ({k})", results["a"] / results[k]) for k in ("a2", "b", "before") if k in results and "a" in results]
            line = "   ".join(f"{name} = {r:.2f}x" for name, r in ratios)
            if "a" in results and "c" in results:
                line += f"   (a) / (c) = {100 * results['a'] / results['c']:.0f} %"
            print(line.strip())
        finally:
            for helper in helpers:
                helper.terminate()
                helper.wait()


if __name__ == "__main__":
    main()
