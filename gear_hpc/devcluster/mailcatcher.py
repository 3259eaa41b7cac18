"""The local cluster's mail catcher: a real SMTP server (aiosmtpd) that keeps
every message it receives as a file, so a newcomer sees what gear sent.

    mailcatcher.py serve --dir DIR [--host 127.0.0.1] [--port 2525]
    mailcatcher.py show  --dir DIR [--last N] [--json]
    mailcatcher.py clear --dir DIR

`serve` runs inside the cluster (started by `devcluster.sh up`, as nobody);
`show` and `clear` back `gear devcluster mail`. For the local cluster only:
it accepts any message from anyone who can reach the port, and delivers
nowhere. Only `serve` needs aiosmtpd (python3-aiosmtpd in the cluster root).
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ENVELOPE_FROM = "X-Caught-Envelope-From"
ENVELOPE_TO = "X-Caught-Envelope-To"


def default_dir() -> Path:
    return Path(os.environ.get("GEAR_DEVCLUSTER_DIR") or "/var/lib/gear-devcluster") / "logs" / "mail"


class Keeper:
    """aiosmtpd handler: each message becomes DIR/<time>-<n>.eml (written, then renamed)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        name = f"{time.time_ns()}-{self.count}.eml"
        head = (f"{ENVELOPE_FROM}: {envelope.mail_from}\r\n"
                f"{ENVELOPE_TO}: {', '.join(envelope.rcpt_tos)}\r\n").encode()
        tmp = self.directory / f".{name}.tmp"
        tmp.write_bytes(head + (envelope.original_content or envelope.content))
        os.chmod(tmp, 0o644)
        tmp.rename(self.directory / name)
        return "250 Message accepted for delivery"


def serve(directory: Path, host: str, port: int) -> None:
    import asyncio

    from aiosmtpd.smtp import SMTP

    directory.mkdir(parents=True, exist_ok=True)
    keeper = Keeper(directory)
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(
        loop.create_server(lambda: SMTP(keeper, hostname="gear-devcluster", data_size_limit=10 * 2**20),
                           host=host, port=port))
    print(f"mailcatcher: listening on {host}:{port}, keeping mail in {directory}", flush=True)
    try:
        loop.run_forever()
    finally:
        server.close()


def read_messages(directory: Path | None = None) -> list[dict[str, Any]]:
    """Every caught message, oldest first, as plain fields (tests use this too)."""
    directory = directory or default_dir()
    messages = []
    for path in sorted(directory.glob("*.eml"), key=lambda p: tuple(int(x) for x in p.stem.split("-"))):
        try:
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        except OSError:
            continue
        body = msg.get_body(preferencelist=("plain",))
        messages.append({
            "file": str(path),
            "envelope_from": str(msg.get(ENVELOPE_FROM, "")),
            "envelope_to": [a.strip() for a in str(msg.get(ENVELOPE_TO, "")).split(",") if a.strip()],
            "from": str(msg.get("From", "")),
            "to": str(msg.get("To", "")),
            "subject": str(msg.get("Subject", "")),
            "date": str(msg.get("Date", "")),
            "headers": [(k, str(v)) for k, v in msg.items()],
            "body": body.get_content() if body is not None else "",
        })
    return messages


def show(directory: Path, last: int | None, as_json: bool) -> None:
    messages = read_messages(directory)
    total = len(messages)
    if last is not None:
        messages = messages[-last:] if last > 0 else []
    if as_json:
        print(json.dumps(messages, indent=2))
        return
    if not messages:
        print(f"no mail caught yet (in {directory})")
        return
    for msg in messages:
        print(f"=== {Path(msg['file']).name}")
        print(f"To:      {', '.join(msg['envelope_to']) or msg['to']}")
        print(f"From:    {msg['from']}")
        print(f"Date:    {msg['date']}")
        print(f"Subject: {msg['subject']}")
        print()
        print(msg["body"].rstrip("\n") or "(empty body)")
        print()
    shown = f"the last {len(messages)} of " if len(messages) < total else ""
    print(f"{shown}{total} message(s) in {directory}")


def clear(directory: Path) -> None:
    removed = 0
    for path in directory.glob("*.eml"):
        path.unlink(missing_ok=True)
        removed += 1
    print(f"removed {removed} message(s) from {directory}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailcatcher.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("serve", "show", "clear"):
        p = sub.add_parser(name)
        p.add_argument("--dir", type=Path, default=default_dir())
        if name == "serve":
            p.add_argument("--host", default="127.0.0.1")
            p.add_argument("--port", type=int, default=2525)
        if name == "show":
            p.add_argument("--last", type=int)
            p.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.dir, args.host, args.port)
    elif args.command == "show":
        show(args.dir, args.last, args.json)
    else:
        clear(args.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
