"""``omni-assets``: demo, emulator, run, status, retry.

``demo``      start the emulator, run the demo requests through the real sensors and jobs in a
              fresh Dagster instance kept beside the storage (``.omni/demo-home``: browse it with
              ``dagster dev``), print a table, exit 0 when every video is materialized.
``run FILE``  the same against the configured provider and storage (``OMNI_PROVIDER``,
              ``OMNI_STORAGE_URL``...), in ``$DAGSTER_HOME`` (default ``./.omni/dagster_home``);
              run it again to resume: nothing is resubmitted and nothing downloaded twice.
``ui``        the Dagster UI (``dagster dev``) on that same persistent home, never a temporary one.
``status``    the registry's view of every request, with what each cost.
``cost``      what was spent, by provider, model, tag or day.
``retry KEY`` ask for a failed / unknown request to be generated again (the only way it is).
``lineage KEY`` a video's ancestry and inputs; ``--reverse IMAGE``: every video that used it.
``emulator``  run the built-in emulator in the foreground.

Every command finds the registry, the storage and the Dagster home the same way
(:mod:`omni_assets.state`) and prints them on one ``state:`` line (on stderr, so that what goes to
stdout stays clean for pipes).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import shlex
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ..state import StateLocation, ensure_home, resolve_state

__all__ = ["main", "say_state", "ui_command"]

DEMO_REQUESTS = Path(__file__).parent.parent / "demo" / "requests.yaml"
# The instances the CLI creates: no telemetry, no "join the community" pop-up (nux) in the UI.
INSTANCE_YAML = "telemetry:\n  enabled: false\nnux:\n  enabled: false\n"
KEY_LINES = 20  # up to this many requests, each state change gets a line of its own


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(
        [
            line.format(*header),
            line.format(*("-" * w for w in widths)),
            *(line.format(*map(str, r)) for r in rows),
        ]
    )


SUMMARY_HEADER = ["key", "provider", "status", "path", "duration", "cost", "sha256"]


def _summary(records: Sequence[Any], storage: object, registry: object) -> str:
    """The per-request table with each video's cost, and the total under it."""
    from ..pipeline.spend import cost_cells, total_line
    from ..registry import Registry

    assert isinstance(registry, Registry)
    keys = [r.key for r in records]
    cells = cost_cells(registry, keys)
    rows = _summary_rows(records, storage)
    for row in rows:
        row.insert(5, cells[row[0]])
    wanted = set(keys)
    total = total_line(c for c in registry.costs() if c.key in wanted)
    return "\n".join([_table(rows, SUMMARY_HEADER), total, *_reasons(records)])


def _reasons(records: Sequence[Any]) -> list[str]:
    """Why each request that is not materialized stands where it is, under the table (the
    path column holds paths only)."""
    lines = []
    for rec in records:
        message = (rec.error.message if rec.error else "").strip()
        if message and rec.state.value != "materialized":
            lines.append(f"{rec.key} ({rec.state.value}): {message[:300]}")
    return ["", "reasons:", *(f"  {line}" for line in lines)] if lines else []


def _summary_rows(records: Sequence[object], storage: object) -> list[list[str]]:
    from ..registry import Record
    from ..storage import VideoStorage

    assert isinstance(storage, VideoStorage)
    rows = []
    for rec in records:
        assert isinstance(rec, Record)
        duration, provider = "", rec.provider
        if rec.state.value == "materialized":
            sidecar_path = storage.sidecar_path(rec.key)
            if storage.exists(sidecar_path):
                sidecar = storage.read_json(sidecar_path)
                duration = f"{sidecar['probe']['duration_s']:.2f}s"
                if sidecar.get("emulated"):  # a fake video never passes for a paid one
                    provider = f"{rec.provider} (emulator)"
        rows.append(
            [
                rec.key,
                provider,
                rec.state.value,
                rec.video_uri or "",
                duration,
                (rec.sha256 or "")[:16],
            ]
        )
    return rows


def _drive(requests_file: Path, timeout_s: float, log_level: str = "WARNING") -> int:
    """Register ``requests_file`` and drive the code location until every request settles."""
    from dagster import BetaWarning, DagsterInstance

    from ..definitions import build_definitions
    from ..pipeline.intake import load_requests_file
    from ..registry import Record
    from ..requests_file import check_intake
    from ..resources import OmniRegistryResource, OmniStorageResource, runtime_from_definitions
    from ..settings import Settings
    from .driver import LocalDriver
    from .lineage import materialize_lineage
    from .progress import ProgressLine

    logging.getLogger("dagster").setLevel(log_level)
    warnings.filterwarnings("ignore", category=BetaWarning)
    settings = Settings.from_env()
    intake = load_requests_file(
        requests_file,
        max_requests=settings.max_requests,
        image_roots=settings.allowed_image_roots,
    )
    storage = OmniStorageResource(url=settings.storage_url)
    registry = OmniRegistryResource()
    defs = build_definitions(
        settings=settings,
        storage=storage,
        registry=registry,
        requests_path=str(requests_file),
        poll_interval_s=1,
    )
    instance = DagsterInstance.get()
    driver = LocalDriver(defs, instance, registry.get_registry(), run_log_level=log_level)
    # Checked here for the issues to print; the requests sensor registers them (and counts the
    # new ones: registering here first made it say "0 new or changed" on a first run).
    checked = check_intake(runtime_from_definitions(defs), intake.requests, intake)
    wanted = {r.key for r in checked.requests}
    last: dict[str, str] = {}
    bar = ProgressLine()

    def progress(records: Sequence[Record]) -> None:
        for rec in records:
            if last.get(rec.key) != rec.state.value:
                last[rec.key] = rec.state.value
                # Each request's steps for a small batch; a big one shows the bar only.
                if len(wanted) <= KEY_LINES:
                    bar.note(f"  {rec.key}: {rec.state.value}")
        bar(records)

    if settings.emulated:
        print(
            f"provider: emulator at {settings.emulator_url} (OMNI_PROVIDER=emulator): "
            "fake videos, nothing is paid"
        )
    print(f"requests: {requests_file} ({len(intake.requests)} readable)")
    started = time.monotonic()
    try:
        result = driver.drive(sorted(wanted), timeout_s=timeout_s, on_tick=progress)
    finally:
        bar.close()
    records = [r for r in result.records if r.key in wanted]
    print()
    print(_summary(records, storage.get_storage(), registry.get_registry()))
    for issue in checked.issues:
        print(f"rejected: {issue}")
    print(materialize_lineage(defs, instance))
    done = sum(r.state.value == "materialized" for r in records)
    # Out of every request in the file: the rejected ones were asked for too.
    requested = len(records) + len(checked.issues)
    print(
        f"\n{done}/{requested} materialized, {len(checked.issues)} "
        f"rejected, {result.runs} runs, {time.monotonic() - started:.1f}s"
    )
    for provider, reason in result.refused.items():
        print(
            f"stopped: {provider} refused submissions ({reason}); nothing was created for its "
            "pending requests. Fix the key, balance or configuration, then run the same "
            "command again"
        )
    if result.over_budget:
        first = next(iter(result.over_budget.values()))
        print(
            f"stopped: {len(result.over_budget)} requests wait on the budget "
            f"({first.split(';')[0]}); nothing was sent for them. Raise OMNI_BUDGET or run the "
            "same command again when the budget allows"
        )
    if result.timed_out:
        print(f"timed out after {timeout_s:.0f}s; run the same command again to resume")
    ok = result.ok and not checked.issues and bool(records)
    return 0 if ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from ..emulator import EmulatorConfig, EmulatorServer

    with ExitStack() as stack:
        storage = Path(args.storage).absolute()
        # Kept after the demo (and wiped at the next): `dagster dev` shows what it did.
        home = storage.with_name(storage.name + "-home")
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        (home / "dagster.yaml").write_text(INSTANCE_YAML)
        server = stack.enter_context(
            EmulatorServer(EmulatorConfig(generation_seconds=args.generation_seconds, seed=1))
        )
        os.environ.update(
            {
                "DAGSTER_HOME": str(home),
                "OMNI_PROVIDER": "emulator",
                "OMNI_EMULATOR_URL": server.url,
                "OMNI_STORAGE_URL": str(storage),
                "OMNI_REGISTRY_URL": f"sqlite:///{home / 'omni_registry.db'}",
            }
        )
        print(f"emulator: {server.url}")
        say_state()
        code = _drive(Path(args.requests), args.timeout)
        if code == 0:
            env = " ".join(
                f"{k}={shlex.quote(str(v))}"
                for k, v in (
                    ("OMNI_PROVIDER", "emulator"),
                    ("DAGSTER_HOME", home),
                    ("OMNI_STORAGE_URL", storage),
                )
            )
            print(f"\nvideos are in {storage / 'videos'}")
            # Commands that run as printed: this interpreter's own scripts (omni-assets need not
            # be on PATH); `ui` is dagster dev on that same home.
            print(f"browse them:   {env} {_command('omni-assets')} ui")
            print(f"their lineage: {env} {_command('omni-assets')} lineage story-dusk")
        return code


def _command(script: str) -> str:
    """How to run ``script`` of this environment as printed: ``.venv/bin/dagster`` (relative
    when under the current folder), else ``python -m``."""
    path = Path(sys.executable).parent / script
    if not path.exists():
        module = {"omni-assets": "omni_assets.cli"}.get(script, script)
        return f"{shlex.quote(sys.executable)} -m {module}"
    relative = os.path.relpath(path)
    return shlex.quote(relative if not relative.startswith("..") else str(path))


def _preflight() -> None:
    """Before anything is registered or sent: a provider was chosen, and it has its key.

    Raises :class:`~omni_assets.settings.ProviderNotConfigured` (``OMNI_PROVIDER`` unset: the
    emulator is used only when asked for), :class:`~omni_assets.settings.MissingProviderKey`,
    or :class:`~omni_assets.providers.errors.InvalidApiKeyError` (a mis-pasted key).
    """
    from ..settings import Settings

    Settings.from_env().check_keys()


def say_state() -> StateLocation:
    """Where the state lives (:mod:`omni_assets.state`), printed as one line on stderr."""
    state = resolve_state()
    print(state.describe(), file=sys.stderr, flush=True)
    return state


def _use_home() -> StateLocation:
    """The persistent Dagster home as this process's ``DAGSTER_HOME`` (created if missing)."""
    state = say_state()
    os.environ["DAGSTER_HOME"] = str(ensure_home(state))
    return state


def cmd_run(args: argparse.Namespace) -> int:
    _preflight()
    _use_home()
    return _drive(Path(args.requests), args.timeout)


_LOCATION_FLAGS = ("-w", "--workspace", "-m", "--module-name", "-f", "--python-file", "-d")


def ui_command(extra: Sequence[str], cwd: Path) -> list[str]:
    """``dagster dev`` for ``omni-assets ui``: the folder's workspace.yaml, else the default
    code location (``omni_assets.location``); ``extra`` is passed on."""
    command = [sys.executable, "-m", "dagster", "dev"]
    names = {arg.split("=", 1)[0] for arg in extra}
    if not names & set(_LOCATION_FLAGS) and not (cwd / "workspace.yaml").exists():
        command += ["-m", "omni_assets.location"]
    return [*command, *extra]


def cmd_ui(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Start ``dagster dev`` on the persistent home: what the UI shows survives a restart."""
    _preflight()  # the code location needs a provider: say so here, not in the UI's error
    state = resolve_state()
    ensure_home(state)
    env = {**os.environ, "DAGSTER_HOME": str(state.home)}
    if args.requests:
        env["OMNI_REQUESTS"] = str(Path(args.requests).absolute())
    command = ui_command(extra, Path.cwd())
    print(state.describe(), file=sys.stderr)
    print(f"ui: {' '.join(command[1:])}   (Ctrl-C stops it)", file=sys.stderr, flush=True)
    # Replaced, not wrapped: Ctrl-C and the exit code are dagster dev's own.
    os.execve(sys.executable, command, env)
    return 0  # pragma: no cover - execve does not return


def cmd_status(args: argparse.Namespace) -> int:
    from ..registry import Registry, default_registry_url
    from ..settings import Settings
    from ..storage import VideoStorage

    state = say_state()
    registry = Registry(default_registry_url())
    storage = VideoStorage(state.storage_url)
    records = registry.records()
    print(_summary(records, storage, registry))
    unknown = [r for r in records if r.state.value == "unknown"]
    if unknown:
        print(_unknown_line(unknown, dict(Settings.from_env().on_unknown)))
    return 0


def _unknown_line(unknown: Sequence[Any], choices: dict[str, str]) -> str:
    """How many requests wait on the user's decision about an unknown create, and the command."""
    providers = sorted({r.provider for r in unknown})
    held = ", ".join(f"{p}: {choices.get(p, 'hold')}" for p in providers)
    return (
        f"{len(unknown)} requests wait on your decision: the provider may have created (and "
        f"charged) their task without telling us ({held}). Check its dashboard, then settle "
        "them all with: omni-assets retry --unknown   (generates them again; may pay twice)"
    )


def cmd_retry(args: argparse.Namespace) -> int:
    from ..registry import RecordState, Registry, default_registry_url

    say_state()
    registry = Registry(default_registry_url())
    code = 0
    keys = list(args.keys)
    if args.unknown:
        keys += [r.key for r in registry.records([RecordState.UNKNOWN]) if r.key not in keys]
    if not keys:
        print("nothing to retry: name KEYs, or --unknown for every unknown request")
        return 1 if not args.unknown else 0
    for key in keys:
        try:
            record = registry.retry(key)
        except (KeyError, ValueError) as exc:
            print(f"{key}: {exc}", file=sys.stderr)
            code = 1
            continue
        print(f"{key}: pending again (attempt {record.attempt}); the next submit run pays for it")
    return code


def cmd_download(args: argparse.Namespace) -> int:
    """Fetch the video of a paid task whose download attempts all failed (no new task)."""
    from ..definitions import build_definitions
    from ..pipeline.materialize import materialize_record, record_failed_download
    from ..resources import OmniRegistryResource, OmniStorageResource, runtime_from_definitions
    from ..settings import Settings

    settings = Settings.from_env()
    defs = build_definitions(
        settings=settings,
        storage=OmniStorageResource(url=settings.storage_url),
        registry=OmniRegistryResource(),
    )
    runtime = runtime_from_definitions(defs)
    registry, code = runtime.registry, 0
    for key in args.keys:
        try:
            record = registry.retry_download(key)
        except ValueError as exc:
            print(f"{key}: {exc}", file=sys.stderr)
            code = 1
            continue
        provider = runtime.providers.get(record.provider)
        token = f"cli-download-{os.getpid()}"
        if provider is None or registry.claim([key], token) != [key]:
            print(f"{key}: {record.provider} is not configured here, or another run took it")
            code = 1
            continue
        try:
            video = materialize_record(
                registry, provider, runtime.storage, registry.get(key) or record
            )
        except Exception as exc:  # reported, and recorded on the request
            state = record_failed_download(registry, key, exc)
            print(f"{key}: download failed ({state}): {exc}", file=sys.stderr)
            code = 1
            continue
        print(f"{key}: materialized {video.uri} ({video.size:,} bytes, sha256 {video.sha256[:12]})")
    return code


def cmd_emulator(argv: list[str]) -> int:
    from ..emulator.__main__ import main as emulator_main

    return emulator_main(argv)


def main(argv: list[str] | None = None) -> int:
    """``omni-assets``; output into a pipe the reader closed (``| head``) ends it quietly."""
    try:
        try:
            code = _main(argv)
        except SystemExit as exit_:  # argparse's --help and usage errors
            code = exit_.code if isinstance(exit_.code, int) else 1 if exit_.code else 0
        sys.stdout.flush()  # here, not at exit, where a BrokenPipeError could not be caught
    except BrokenPipeError:
        # The reader has what it wanted. Point stdout at /dev/null so the interpreter's own
        # flush at exit does not complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0
    return code


def _main(argv: list[str] | None) -> int:
    from .lineage import add_lineage_parser, cmd_lineage
    from .spend import add_cost_parser, cmd_cost

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["emulator"]:
        return cmd_emulator(argv[1:])
    extra: list[str] = []
    if argv[:1] == ["ui"] and "--" in argv:  # the rest goes to dagster dev as it is
        argv, extra = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    parser = argparse.ArgumentParser(
        prog="omni-assets",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the demo requests offline on the emulator")
    demo.add_argument("--requests", default=str(DEMO_REQUESTS))
    demo.add_argument("--storage", default=".omni/demo")
    demo.add_argument("--generation-seconds", type=float, default=2.0)
    demo.add_argument("--timeout", type=float, default=300.0)
    run = sub.add_parser("run", help="run a requests file to completion (resumable)")
    run.add_argument("requests")
    run.add_argument("--timeout", type=float, default=3600.0)
    sub.add_parser("status", help="show every request's state")
    retry = sub.add_parser("retry", help="generate failed/unknown requests again (pays again)")
    retry.add_argument("keys", nargs="*")
    retry.add_argument(
        "--unknown", action="store_true", help="every request whose submission outcome is unknown"
    )
    download = sub.add_parser(
        "download", help="fetch the video of a paid task whose downloads failed (no new task)"
    )
    download.add_argument("keys", nargs="+")
    sub.add_parser("emulator", help="run the built-in emulator (see --help after it)")
    ui = sub.add_parser(
        "ui",
        help="the Dagster UI (dagster dev) on the persistent home; options after -- go to it",
    )
    ui.add_argument("requests", nargs="?", help="requests file (default: OMNI_REQUESTS)")
    add_lineage_parser(sub)
    add_cost_parser(sub)
    args = parser.parse_args(argv)
    from ..providers.errors import InvalidApiKeyError
    from ..settings import MissingProviderKey, ProviderNotConfigured

    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "demo": cmd_demo,
        "run": cmd_run,
        "status": cmd_status,
        "retry": cmd_retry,
        "download": cmd_download,
        "lineage": cmd_lineage,
        "cost": cmd_cost,
        "ui": functools.partial(cmd_ui, extra=extra),
    }
    try:
        return handlers[args.command](args)
    except (ProviderNotConfigured, MissingProviderKey, InvalidApiKeyError) as exc:
        # A configuration mistake, not a crash: say what to set, exit 2, no traceback.
        print(f"omni-assets {args.command}: {exc}", file=sys.stderr)
        return 2
