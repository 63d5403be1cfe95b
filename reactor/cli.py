"""The ``reactor`` command line. Exit codes: 0 ok, 1 failure, 2 bad usage or bad configuration."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from reactor import config as config_mod
from reactor import log
from reactor.config import Settings
from reactor.errors import ConfigurationError, ReactorError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", help="TOML configuration (default: $REACTOR_CONFIG, else ./reactor.toml)")
    p = argparse.ArgumentParser(prog="reactor", description="Entra ID changes to AskCody over SCIM, in seconds.")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    s = sub.add_parser("serve", parents=[common], help="run the service")
    s.add_argument("--record", metavar="PATH", help="do not sync: append each unit of work to PATH as JSON (diagnosis)")

    d = sub.add_parser("demo", parents=[common], help="run the embedded demo (simulated tenant + SCIM target)")
    d.add_argument("--once", action="store_true", help="play the scenario, print a summary and exit")
    d.add_argument("--port", type=int, default=0, help="port of the reactor's status page (default: any free port)")

    y = sub.add_parser("sync", parents=[common], help="full reconcile now")
    y.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    y.add_argument("--json", action="store_true", help="print the plan as one JSON document")
    y.add_argument("--user", metavar="USER", help="provision on demand: only this person (object id, UPN or e-mail)")

    x = sub.add_parser("explain", parents=[common], help="why a person has the AskCody access they have")
    x.add_argument("user", metavar="USER", help="object id, userPrincipalName or e-mail")
    x.add_argument("--json", action="store_true", help="print one JSON document")

    subs = sub.add_parser("subscriptions", parents=[common], help="manage our Graph subscriptions")
    subs_verbs = subs.add_subparsers(dest="action", required=True, metavar="ACTION")
    sl = subs_verbs.add_parser("list", parents=[common], help="show our subscriptions")
    sl.add_argument("--json", action="store_true")
    for name, text in (("ensure", "create or adopt"), ("renew", "renew now"), ("delete", "remove ours")):
        subs_verbs.add_parser(name, parents=[common], help=text)

    dl = sub.add_parser("deadletters", parents=[common], help="inspect and replay dead letters")
    dl_verbs = dl.add_subparsers(dest="action", required=True, metavar="ACTION")
    dll = dl_verbs.add_parser("list", parents=[common], help="list dead letters")
    dll.add_argument("--json", action="store_true")
    dlr = dl_verbs.add_parser("replay", parents=[common], help="re-run dead letters")
    dlr.add_argument("ids", nargs="*", type=int, metavar="ID")
    dlr.add_argument("--all", action="store_true", help="replay every dead letter")

    sub.add_parser("check-config", parents=[common], help="validate and print the effective configuration")

    au = sub.add_parser("audit", parents=[common], help="the applied SCIM operations with cause, time and outcome")
    au.add_argument("--user", metavar="USER", help="only this person's (UPN, object id or e-mail)")
    au.add_argument("--since", metavar="ISO", type=_iso_time, help="only from this time on (ISO 8601; UTC unless it says)")
    au.add_argument("--json", action="store_true", help="print one JSON document (an array of objects)")
    return p


def _iso_time(text: str) -> float:
    """An ISO 8601 time as epoch seconds; one without an offset is UTC."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r} (e.g. 2026-12-01T08:00:00Z)") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


def _load(args: argparse.Namespace, *, require_remote: bool = True) -> Settings:
    return config_mod.load(args.config, require_remote=require_remote)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigurationError as exc:
        sys.stderr.write(f"reactor: configuration error: {exc}\n")
        return EXIT_USAGE
    except ReactorError as exc:
        sys.stderr.write(f"reactor: {exc}\n")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE


def _dispatch(args: argparse.Namespace) -> int:
    verb = args.verb
    if verb == "check-config":
        settings = _load(args)
        _print_json(config_mod.redacted(settings))
        return EXIT_OK
    if verb == "serve":
        return _serve(args)
    if verb == "demo":
        try:
            import scim2_server  # noqa: F401  (the demo's AskCody stand-in, an optional extra)
        except ImportError:
            raise ConfigurationError(
                "reactor demo needs the demo extra: pip install 'askcody-entra-reactor[demo]' (or '.[demo]' from a clone)"
            ) from None
        from reactor.demo import run_demo

        return int(run_demo(once=args.once, port=args.port))
    if verb == "sync" and args.user is not None:
        from reactor.explain import sync_user_command

        return int(asyncio.run(sync_user_command(_load(args), args.user, dry_run=args.dry_run, as_json=args.json)))
    if verb == "explain":
        from reactor.explain import explain_command

        return int(asyncio.run(explain_command(_load(args), args.user, as_json=args.json)))
    if verb == "sync":
        from reactor.commands import sync_command

        return int(asyncio.run(sync_command(_load(args), dry_run=args.dry_run, as_json=args.json)))
    if verb == "subscriptions":
        from reactor.commands import subscriptions_command

        return int(asyncio.run(subscriptions_command(_load(args), args.action, as_json=getattr(args, "json", False))))
    if verb == "deadletters":
        from reactor.commands import deadletters_command

        if args.action == "replay" and not args.ids and not args.all:
            sys.stderr.write("reactor: deadletters replay needs IDs or --all\n")
            return EXIT_USAGE
        return int(asyncio.run(
            deadletters_command(
                _load(args, require_remote=args.action == "replay"),
                args.action,
                ids=getattr(args, "ids", []),
                replay_all=getattr(args, "all", False),
                as_json=getattr(args, "json", False),
            )
        ))
    if verb == "audit":
        from reactor.commands import audit_command

        return int(asyncio.run(
            audit_command(_load(args, require_remote=False), user=args.user, since=args.since, as_json=args.json)
        ))
    raise AssertionError(verb)


def _serve(args: argparse.Namespace) -> int:
    from reactor.app import create_app
    from reactor.server import run
    from reactor.service import Service
    from reactor.store import open_store

    settings = _load(args, require_remote=not args.record)
    log.configure(settings.server.log_level)
    store = open_store(settings.store)
    if args.record:
        from reactor.handlers import RecordingHandler

        service = Service(settings, store, RecordingHandler(args.record))
    else:
        from reactor.wiring import build_service

        service = build_service(settings, store).service
    log.event(
        "serve", host=settings.server.host, port=settings.server.port, admin_host=settings.server.admin_host,
        admin_port=settings.server.admin_port, store=settings.store.url.split(":", 1)[0],
        graph_credential=settings.graph.credential_kind, pid=os.getpid(),
    )
    run(create_app(service), settings)
    return EXIT_OK
