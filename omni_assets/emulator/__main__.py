"""``python -m omni_assets.emulator --port 8765 --generation-seconds 2 --seed 1``."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import json
import os
import socket
import sys
import threading
from typing import Any

from .config import PROVIDERS, EmulatorConfig
from .process import emulator_pid, watch_parent
from .server import LOOPBACK_HOSTS, run_emulator

__all__ = ["build_parser", "main"]

_SCALARS: dict[str, type] = {
    "generation_seconds": float,
    "queue_fraction": float,
    "seed": int,
    "retry_after_seconds": int,
    "rate_limit_per_s": float,
    "video_padding_bytes": int,
    "download_bytes_per_second": float,
    "audit_log": str,
    "cache_dir": str,
}


def build_parser() -> argparse.ArgumentParser:
    """The command line: host/port, the common settings as flags, anything else via --set."""
    parser = argparse.ArgumentParser(
        prog="omni-assets emulator",
        description="Serve the JimmyAI, APIMart, ToAPIs and CRUN dialects on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=8765, help="port (0 picks a free one)")
    for name, kind in _SCALARS.items():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=kind)
    for field in dataclasses.fields(EmulatorConfig):
        if field.name.startswith("rate_") and field.name not in _SCALARS:
            flag = "--" + field.name.replace("_", "-")
            parser.add_argument(flag, dest=field.name, type=float, metavar="P")
    parser.add_argument(
        "--api-key", dest="api_keys", action="append", help="accept only these keys (repeatable)"
    )
    parser.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="stop when the parent process is gone (stdin closes or the parent pid changes): "
        "how omni_assets starts it in the background",
    )
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="any EmulatorConfig field, e.g. --set url_ttl_seconds='{\"apimart\": 60}'",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the emulator until interrupted; 2 on a bad setting."""
    parser = build_parser()
    args = parser.parse_args(argv)
    changes: dict[str, Any] = {
        key: value
        for key, value in vars(args).items()
        if key not in ("host", "port", "settings", "exit_with_parent") and value is not None
    }
    for setting in args.settings:
        key, sep, raw = setting.partition("=")
        if not sep:
            parser.error(f"--set expects KEY=JSON, got {setting!r}")
        try:
            changes[key] = json.loads(raw)
        except ValueError:
            changes[key] = raw
    try:
        config = EmulatorConfig().with_changes(changes)
        if args.host not in LOOPBACK_HOSTS:
            raise ValueError(f"--host must be a loopback address ({', '.join(LOOPBACK_HOSTS)})")
    except ValueError as exc:
        print(f"omni-assets emulator: {exc}", file=sys.stderr)
        return 2
    base = f"http://{args.host}:{args.port}"
    taken = _port_taken(args.host, args.port)
    if taken:
        print(f"omni-assets emulator: {taken}", file=sys.stderr)
        return 1
    print(f"omni_assets emulator on {base}", file=sys.stderr)
    for provider in PROVIDERS:
        print(f"  {provider:8} {base}/{provider}", file=sys.stderr)
    on_server = _stop_with_parent if args.exit_with_parent else None
    # uvicorn re-raises the SIGINT it handled once it has shut down; Ctrl-C is how this command
    # is meant to stop, so that is a clean exit.
    with contextlib.suppress(KeyboardInterrupt):
        run_emulator(args.host, args.port, config, on_server=on_server)
    return 0


def _port_taken(host: str, port: int) -> str:
    """Why ``host:port`` cannot be served ("" if it can): an emulator already runs there (the
    one ``dagster dev`` or ``omni-assets run`` started, say), or another program holds it."""
    if port == 0:
        return ""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
            return ""
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return ""  # let the server report it
    base = f"http://{host}:{port}"
    pid = emulator_pid(base)
    if pid is not None:
        who = f" (pid {pid})" if pid else ""
        return (
            f"an omni_assets emulator is already running on {base}{who}; use it as it is "
            f"(OMNI_EMULATOR_URL={base}), or stop it first, or choose another --port"
        )
    return f"port {port} on {host} is in use by another program; choose another --port"


def _stop_with_parent(server: Any) -> None:
    def stop() -> None:
        server.should_exit = True
        # If a graceful shutdown hangs, the parent is gone anyway: leave no orphan behind.
        threading.Timer(5.0, os._exit, args=(0,)).start()

    watch_parent(stop)


if __name__ == "__main__":
    raise SystemExit(main())
