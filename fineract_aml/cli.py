"""``fineract-aml``: the one console script and the product's composition root.

This is the only module that wires adapters together (store, Ray, Serve, ingress, dashboard).
Settings are loaded once here and passed down.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as pkg_version

from aml.errors import AmlError, ConfigError
from aml.settings import Settings, load_settings
from storage import embedded

log = logging.getLogger("fineract_aml")


def product_version() -> str:
    try:
        return pkg_version("fineract-aml")
    except PackageNotFoundError:  # running from a source tree without install
        return "0+unknown"


def _cmd_version(_: Settings, __: argparse.Namespace) -> int:
    print(f"fineract-aml {product_version()}")
    return 0


def _cmd_db(settings: Settings, args: argparse.Namespace) -> int:
    if settings.mongodb_uri is not None and args.action != "status":
        print("AML_MONGODB_URI is set: the embedded store is not used", file=sys.stderr)
        return 2
    if args.action == "start":
        server = embedded.start(
            settings.data_dir, host=settings.embedded_db_host, port=settings.embedded_db_port
        )
        print(f"embedded store running: {server.uri} (pid {server.pid}, data {settings.data_dir})")
        return 0
    if args.action == "stop":
        stopped = embedded.stop(settings.data_dir)
        print("embedded store stopped" if stopped else "embedded store was not running")
        return 0
    if settings.mongodb_uri is not None:
        from storage.embedded import ping

        ok = ping(settings.mongodb_uri.get_secret_value(), timeout_ms=settings.mongodb_timeout_ms)
        print(f"external MongoDB: {'reachable' if ok else 'UNREACHABLE'}")
        return 0 if ok else 1
    running = embedded.status(settings.data_dir)
    if running is None:
        print(f"embedded store: not running (data {settings.data_dir})")
        return 1
    print(f"embedded store: running at {running.uri} (pid {running.pid}, data {settings.data_dir})")
    return 0


def _cmd_create_admin(settings: Settings, args: argparse.Namespace) -> int:
    from fineract_aml.runtime import create_admin

    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
    if password is None:
        password = getpass.getpass("New admin password: ")
        if password != getpass.getpass("Repeat password: "):
            print("passwords differ", file=sys.stderr)
            return 2
    asyncio.run(create_admin(settings, username=args.username, password=password))
    print(f"admin user {args.username!r} created")
    return 0


def _cmd_run(settings: Settings, _: argparse.Namespace) -> int:
    from fineract_aml.runtime import run_all

    return run_all(settings)


Command = Callable[[Settings, argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fineract-aml",
        description="Real-time AML and fraud monitoring for Apache Fineract.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=_cmd_version)

    p = sub.add_parser("db", help="manage the embedded MongoDB-wire store")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.set_defaults(func=_cmd_db)

    p = sub.add_parser("create-admin", help="create an administrator account")
    p.add_argument("--username", required=True)
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.set_defaults(func=_cmd_create_admin)

    p = sub.add_parser("run", help="run the whole product (store, Ray Serve, ingress, dashboard)")
    p.set_defaults(func=_cmd_run)

    from fineract_aml import commands

    commands.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"fineract-aml: {exc.message}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    func: Command = args.func
    try:
        return func(settings, args)
    except AmlError as exc:
        print(f"fineract-aml: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
