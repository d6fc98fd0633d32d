"""`gocaas cache stats|gc|verify|clear|residents|gocacheprog|keygen|explain|serve`, and `gocaas cacheprog`
(the GOCACHEPROG program by hand)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gocaas.cache.diskspace import MinFree
from gocaas.cli.common import fail, load
from gocaas.errors import GocaasError

cache_app = typer.Typer(no_args_is_help=True, help="The shared build cache and the result cache.")


def _size(value: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024  # type: ignore[assignment]
    return str(value)


@cache_app.command("stats")
def cache_stats() -> None:
    """The store's size, and hits, misses and bytes over every build in the data directory."""
    from gocaas.cache.maintenance import usage
    from gocaas.cache.store import Store
    from gocaas.cache.tally import tally
    from gocaas.stages.gocmd import CACHE_STATS

    settings = load()
    totals = tally(sorted(settings.builds_dir.glob(f"*/{CACHE_STATS}")))
    size = usage(Store(str(settings.cache_dir), read_only=True)) if settings.cache_dir.is_dir() else 0
    table = Table("", "value", show_header=False)
    table.add_row("store", f"{settings.cache_dir} ({_size(size)})")
    table.add_row("budget", _budget(settings.cache_max_size, settings.min_free, str(settings.cache_dir)))
    for name, value in stats_rows(totals):
        table.add_row(name, value)
    Console().print(table)


def _budget(max_size: int, min_free: MinFree | None, store_dir: str) -> str:
    """The stats line on the limits: the size budget, and the disk's free space against min_free."""
    from gocaas.cache.diskspace import free_space

    free, total = free_space(store_dir)
    budget = _size(max_size) if max_size else "none"
    kept = f", {_size(min_free.bytes_on(total))} ({min_free}) kept free" if min_free else ""
    return f"{budget}; the disk has {_size(free)} free of {_size(total)}{kept}"


def stats_rows(totals: dict[str, int]) -> list[tuple[str, str]]:
    """`gocaas cache stats`'s lines for tallied counters: per tier, the remote's only when it was used."""
    t = totals
    gets, hits, remote_hits, served = t["gets"], t["hits"], t["remote_hits"], t["resident_served"]
    ratio = f" ({hits / gets:.1%})" if gets else ""
    local_bytes = _size(t["hit_bytes"] - t["remote_bytes_down"])
    rows = [
        ("go commands", f"{t['go_commands']}" + (f" ({served} by a resident program)" if served else "")),
        ("gets", f"{gets}: {hits} hits{ratio}, {t['misses']} misses"),
        ("local disk", f"{hits - remote_hits} hits, {local_bytes}"),
        ("puts", f"{t['puts']} ({_size(t['put_new_bytes'])} new)"),
        ("errors", f"{t['errors']} (corrupt objects refused: {t['corrupt']})"),
    ]
    if t["refills"]:
        rows.append(("damaged cache", f"{t['refills']} go commands re-run with their entries rebuilt"))
    if t["bypasses"]:
        rows.append(("failed cache", f"{t['bypasses']} go commands re-run without the cache program"))
    if t["remote_requests"] or t["remote_skipped"]:
        down, up = _size(t["remote_bytes_down"]), _size(t["remote_bytes_up"])
        prefetched = _size(t["prefetch_bytes"])
        rows += [
            ("remote", f"{remote_hits} hits, {t['remote_misses']} misses, {down} down, "
                       f"{t['remote_requests']} requests"),
            ("prefetch", f"{t['prefetched']} objects ({prefetched}), {t['prefetch_hits']} gets waited for "
                         f"them, {t['traces_sent']} traces sent"),
            ("uploads", f"{t['uploads']} ({up} up), {t['upload_skipped']} objects already there, "
                        f"{t['upload_dropped']} dropped"),
            ("remote failures", f"{t['remote_errors']} errors, {t['remote_skipped']} not asked "
                                f"(breaker open), {t['breaker_opens']} breaker opens"),
        ]  # fmt: skip
        if t["remote_unsigned"] or t["remote_bad_signatures"]:
            refused = f"{t['remote_unsigned']} unsigned, {t['remote_bad_signatures']} with a bad signature"
            rows.append(("refused entries", refused))
    return rows


@cache_app.command("gc")
def cache_gc(
    max_size: Annotated[
        str | None, typer.Option(help="Budget, e.g. 10GiB or 500MB (default: the cache_max_size setting).")
    ] = None,
    min_free: Annotated[
        str | None,
        typer.Option(
            help="Free space to leave on the store's disk, e.g. 20GiB or 5% (default: the cache_min_free "
            "setting; 0: none)."
        ),
    ] = None,
) -> None:
    """Evict least-recently-used entries until the store fits the budget and its disk has min-free free;
    then trim the result cache to results_max_size the same way."""
    from gocaas.cache.maintenance import gc
    from gocaas.cache.options import parse_size
    from gocaas.cache.results import trim
    from gocaas.cache.store import CacheError, Store

    settings = load()
    try:
        budget = settings.cache_max_size if max_size is None else parse_size(max_size)
    except ValueError as exc:
        raise fail(f"--max-size: {exc}") from None
    try:
        keep = settings.min_free if min_free is None else MinFree.parse(min_free)
    except ValueError as exc:
        raise fail(f"--min-free: {exc}") from None
    store = Store(str(settings.cache_dir), max_size=budget or None)
    try:
        result = gc(store, min_free=keep)
    except CacheError as exc:
        raise fail(str(exc), 3) from None
    kept = (
        f"; kept {_size(result.kept_young_bytes)} over the budget: used in the last "
        f"{store.min_age_s / 3600:g} h, which a running go command may still need"
        if result.kept_young_bytes
        else ""
    )
    disk = f" (the disk was {_size(result.disk_short)} short of {keep} free)" if result.disk_short else ""
    busy = "" if result.ran else " (another gc was running: this one did nothing)"
    Console().print(
        f"{_size(result.total_before)} → {_size(result.total_after)}{disk}: removed {result.removed_objects} "
        f"objects, {result.removed_actions} entries ({_size(result.removed_bytes)}){kept}{busy}",
        highlight=False,
    )
    results = trim(settings.results_dir.parent, settings.results_max_size or None, keep)
    Console().print(
        f"result cache: removed {results.entries} builds' results ({_size(results.removed_bytes)}), "
        f"{_size(results.total_after)} left (budget {_size(settings.results_max_size)})",
        highlight=False,
    )


@cache_app.command("verify")
def cache_verify(
    verify_key: Annotated[
        list[str] | None,
        typer.Option(
            help="Also check entries' signatures against this public key (repeatable; default: "
            "the cache_remote_verify_keys setting); bad ones are removed."
        ),
    ] = None,
    drop_unsigned: Annotated[
        bool, typer.Option(help="With verify keys, also remove entries that carry no signature.")
    ] = False,
) -> None:
    """Rehash every object; corrupt ones (and entries pointing at missing objects) are removed. With verify
    keys, entries whose signature none of the keys made are removed too (e.g. on a cache server)."""
    from gocaas.cache.maintenance import verify
    from gocaas.cache.signing import EntryVerifier, parse_key
    from gocaas.cache.store import Store

    settings = load()
    try:
        keys = [parse_key(k, "--verify-key") for k in verify_key or settings.cache_remote_verify_keys]
    except ValueError as exc:
        raise fail(str(exc)) from None
    if drop_unsigned and not keys:
        raise fail("--drop-unsigned needs a verify key (--verify-key or cache_remote_verify_keys)")
    verifier = EntryVerifier(keys) if keys else None
    result = verify(Store(str(settings.cache_dir)), verifier, drop_unsigned=drop_unsigned)
    signed = (
        f"; {result.bad_signatures} bad signatures, {result.unsigned} unsigned"
        f"{' (removed)' if drop_unsigned else ''}"
        if verifier is not None
        else ""
    )
    Console().print(
        f"{result.objects} objects ({_size(result.bytes)}), {result.corrupt_objects} corrupt; "
        f"{result.actions} entries, {result.bad_actions} bad{signed}; removed {len(result.removed)}",
        highlight=False,
    )
    if result.corrupt_objects or result.bad_actions or result.bad_signatures:
        raise typer.Exit(1)


@cache_app.command("clear")
def cache_clear(
    namespace: Annotated[
        str | None, typer.Option(help="The namespace to clear (default: the settings' cache_namespace).")
    ] = None,
    results: Annotated[
        bool, typer.Option(help="Also forget the namespace's result cache (earlier builds' reused results).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Drop a namespace's build cache entries, e.g. after a remote served entries naming wrong outputs."""
    from gocaas.cache.maintenance import clear_namespace, remove_tree
    from gocaas.cache.store import CacheError, Store

    settings = load()
    name = namespace or settings.cache_namespace
    where = f"namespace {name!r} of {settings.cache_dir}"
    if not yes:
        if not sys.stdin.isatty():
            raise fail(f"clearing {where} needs --yes when there is no terminal to ask on")
        typer.confirm(f"Drop every build cache entry of {where}?", abort=True)
    try:
        dropped = clear_namespace(Store(str(settings.cache_dir)), name)
    except CacheError as exc:
        raise fail(str(exc)) from None
    message = f"dropped {dropped} entries of {where}; objects stay until gc"
    if results:
        results_dir = settings.results_dir.parent / name
        remove_tree(str(results_dir), str(results_dir.with_name(f".cleared-{name}-{os.getpid()}")))
        message += f", and the result cache {results_dir}"
    Console().print(message, highlight=False)


@cache_app.command("residents")
def cache_residents(
    stop: Annotated[
        bool, typer.Option("--stop", help="End them (each finishes the go commands it serves).")
    ] = False,
) -> None:
    """The resident cache programs (`cacheprog --resident`) this user runs: pid, store, the namespaces
    served so far, since when."""
    import time

    from gocaas.cache import resident_server
    from gocaas.daemon.identity import runtime_dir

    directory = runtime_dir(os.environ)
    found = resident_server.running(directory) if directory is not None else []
    if not found:
        Console().print("no resident cache programs", highlight=False)
        return
    table = Table("pid", "store", "namespaces", "mode", "running for", "state" if stop else "socket")
    for resident in found:
        age = f"{(time.time() - resident.started) / 60:.0f} min"
        mode = "read-only" if resident.read_only else "read-write"
        last = ("ended" if resident_server.stop(resident) else "still ending") if stop else resident.socket
        served = ", ".join(resident.namespaces) or "none yet"
        table.add_row(str(resident.pid), resident.store, served, mode, age, last)
    Console().print(table)


@cache_app.command("keygen")
def cache_keygen(
    path: Annotated[Path, typer.Argument(help="Where to write the private key (it must not exist).")],
) -> None:
    """Make an Ed25519 key pair for signed cache entries: the private key goes to PATH (mode 0600) for
    trusted writers (cache_remote_signing_key_file); the public key is printed, for every reader
    (cache_remote_verify_keys)."""
    from gocaas.cache.signing import generate

    try:
        public = generate(str(path))
    except OSError as exc:
        raise fail(f"cannot write the private key: {exc}") from None
    typer.echo(public.hex())


@cache_app.command("explain")
def cache_explain(
    first: Annotated[str, typer.Argument(help="The earlier build's id.")],
    second: Annotated[str, typer.Argument(help="The build that did not reuse it.")],
) -> None:
    """Which inputs differed between two builds (toolchain, environment, options, targets, files)."""
    from gocaas.pipeline.explain import explain

    settings = load()
    try:
        why = explain(settings, first, second)
    except GocaasError as exc:
        raise fail(exc.message, exc.exit_code) from None
    for line in why.lines():
        typer.echo(line)


@cache_app.command("serve")
def cache_serve(
    listen: Annotated[str, typer.Option(help="HOST:PORT to listen on.")] = "127.0.0.1:8080",
    token: Annotated[
        str | None, typer.Option(envvar="GOCAAS_CACHE_TOKEN", help="The bearer token clients must send.")
    ] = None,
    read_token: Annotated[str | None, typer.Option(help="A token that may only read.")] = None,
    read_only: Annotated[bool, typer.Option(help="Refuse every write.")] = False,
    read_only_namespace: Annotated[
        list[str] | None, typer.Option(help="A namespace nobody may write.")
    ] = None,
    max_size: Annotated[
        str | None, typer.Option(help="The store's budget, e.g. 50GiB (default: cache_max_size).")
    ] = None,
    min_free: Annotated[
        str | None,
        typer.Option(help="Free space to leave on its disk, e.g. 20GiB or 5% (default: cache_min_free)."),
    ] = None,
    max_object_size: Annotated[str | None, typer.Option(help="The largest object accepted.")] = None,
    verify_key: Annotated[
        list[str] | None,
        typer.Option(help="Accept only entries signed by this Ed25519 public key (repeatable)."),
    ] = None,
) -> None:
    """Serve the build cache over HTTP to other workers (GET/HEAD/PUT by namespace and key, bearer token)."""
    from gocaas.cache.server import serve_command

    settings = load()
    if not token:
        raise fail("a token is required: --token or GOCAAS_CACHE_TOKEN")
    try:
        serve_command(
            listen,
            token,
            settings.cache_dir,
            read_token=read_token,
            read_only=read_only,
            read_only_namespaces=read_only_namespace or (),
            max_size=str(settings.cache_max_size) if max_size is None else max_size,
            min_free=settings.cache_min_free if min_free is None else min_free,
            max_object_size=max_object_size,
            verify_keys=verify_key or (),
        )
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None


@cache_app.command(
    "gocacheprog",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def cache_gocacheprog(ctx: typer.Context) -> None:
    """Print the fastest GOCACHEPROG for `gocaas cacheprog` with these flags, for go commands run by hand:
    export GOCACHEPROG="$(gocaas cache gocacheprog --resident)". With --resident, the go command starts the
    compiled attacher (built now with the go on PATH, once), which hands it to the resident program.
    The value holds the options and token of now: print it again when they change."""
    import shutil

    from gocaas.cache.attacher import AttacherBuildError, attacher_path, build_attacher, resident_command
    from gocaas.cache.command import LAUNCHER, go_quote
    from gocaas.cache.options import parse_args

    args = list(ctx.args)
    try:
        opts = parse_args(args)
    except ValueError as exc:
        raise fail(f"gocacheprog: {exc}") from None
    if opts.attach_fd is not None or opts.resident_serve:
        raise fail("gocacheprog: --attach-fd and --resident-serve are gocaas's own")
    argv = [sys.executable, "-I", "-S", LAUNCHER, "--dir", os.path.abspath(opts.dir), *args]  # noqa: PTH100
    if opts.resident:
        settings = load()
        path = attacher_path(settings.helpers_dir)
        go = shutil.which("go")
        try:
            if not os.access(path, os.X_OK):
                if go is None:
                    raise AttacherBuildError("no go on PATH to build it with")
                with Console(stderr=True).status("building the attacher with go (once)"):
                    build_attacher(Path(go), path, settings.gocache)
            argv = resident_command(path, argv, os.environ)
        except (AttacherBuildError, OSError) as exc:
            typer.echo(f"gocaas: go commands will start Python's program, not the attacher: {exc}", err=True)
    typer.echo(go_quote(argv))


def cacheprog(ctx: typer.Context) -> None:
    """The GOCACHEPROG program over the store: GOCACHEPROG="gocaas cacheprog [--dir D] [--namespace NS]
    [--read-only]" go build ./... (gocaas itself starts it more cheaply, without the CLI)."""
    from gocaas.cache.prog import main as cacheprog_main

    raise typer.Exit(cacheprog_main(list(ctx.args)))
