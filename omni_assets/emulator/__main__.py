"""``python -m omni_assets.emulator --port 8765 --generation-seconds 2 --seed 1``."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from typing import Any

from .config import PROVIDERS, EmulatorConfig
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
        if key not in ("host", "port", "settings") and value is not None
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
    print(f"omni_assets emulator on {base}", file=sys.stderr)
    for provider in PROVIDERS:
        print(f"  {provider:8} {base}/{provider}", file=sys.stderr)
    # uvicorn re-raises the SIGINT it handled once it has shut down; Ctrl-C is how this command
    # is meant to stop, so that is a clean exit.
    with contextlib.suppress(KeyboardInterrupt):
        run_emulator(args.host, args.port, config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
