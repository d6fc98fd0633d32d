"""`gocaas cacheprog`: a GOCACHEPROG program over the local Store.

    GOCACHEPROG="python -m gocaas.cache.prog [--dir DIR] [--namespace NS] [--read-only]" go build ./...

(`gocaas.cache.command.cacheprog_command` builds a faster-starting value.) The go command starts this program
once per invocation and talks to it over stdin/stdout (protocol: cmd/go/internal/cacheprog). The main thread
reads requests and streams put bodies to temp files while hashing them. Gets and the commit of puts run on
that thread too, unless `--workers N` gives a pool of N threads: then a job goes to the pool whenever more
requests are already waiting behind it. Responses are written as they finish, in any order, under one lock;
`close` waits for the work in flight, answers, and exits; work left after it (prefetched entries, a gc)
runs once the go command's stdout and stderr are let go (`detach_stderr`).

Why no pool by default: the go command mostly has one request in flight (warm `go build std`: 1,066 gets,
70% sent with nothing else outstanding, never more than two), each a few syscalls on a local disk, and
handing a job to a thread costs a wake-up and the GIL. Measured on 2 CPUs (warm go build std): answering on
the reading thread is within noise of a minimal GOCACHEPROG written in Go; a pool of 2 made the whole build
0-7% slower, the more so the larger go's -p. The pool is for slow storage (network filesystems, the remote
tier to come).

Start-up time is paid by every go command, so this module and everything it imports use the standard
library's C-backed parts only (no json, argparse, threading, pydantic, typer, rich or gocaas.settings).

With `--remote URL` (remote.py), a local miss goes to one of REMOTE_FETCHERS threads that asks the remote
(filling the local store), and each put is queued for upload once answered; queued uploads are waited for,
up to --flush-timeout, before close is answered. The tier's imports (http.client, threading, pybreaker:
~35 ms) load at the first local miss or put (lazyremote.py): a go command that only hits never pays.
"""

from __future__ import annotations

import os
import sys
from _queue import SimpleQueue
from _thread import allocate_lock, start_new_thread

from gocaas.cache.files import sha256
from gocaas.cache.lazyremote import LazyRemote, lazy_remote
from gocaas.cache.options import USAGE, parse_args
from gocaas.cache.stats import Stats
from gocaas.cache.store import CacheError, Store
from gocaas.cache.wire import ProtocolError, Reader, decode, hit_answer, response, unb64

TYPE_CHECKING = False
if TYPE_CHECKING:
    from gocaas.cache.files import ObjectWriter
    from gocaas.cache.options import Options
    from gocaas.cache.store import Entry

REMOTE_FETCHERS = 4  # threads asking the remote on local misses (the go command has a few gets in flight)


class Server:
    """One GOCACHEPROG session over a store."""

    def __init__(
        self,
        store: Store,
        namespace: str,
        *,
        workers: int = 0,
        stats_file: str = "",
        remote: LazyRemote | None = None,
        refill: bool = False,
        finish_first: bool = False,
    ) -> None:
        self.store = store
        self.refill = refill  # every get misses (options.py: --refill)
        self.finish_first = finish_first  # finish() before answering close (--finish-before-close)
        self.finished = False
        self.namespace = namespace
        self.workers = max(0, workers)
        self.stats = Stats()
        self.stats_file = stats_file
        self.known = ("get", "close") if store.read_only else ("get", "put", "close")
        self._out = 1
        self._lock = allocate_lock()
        self._jobs: SimpleQueue = SimpleQueue()  # type: ignore[type-arg]
        self._gc_running = allocate_lock()  # held while a gc runs in the background
        self.remote = remote
        self.trace: list[bytes] = []  # actions got or put, in order: the session's trace (prefetch.py)
        self.fetchers = REMOTE_FETCHERS if remote is not None else 0
        self.resident = False  # served by a resident program (resident_server.py), which shares the store
        self._corrupt_before = store.corrupt

    def serve(self, in_fd: int = 0, out_fd: int = 1) -> int:
        self._out = out_fd
        self._send(response(0, known=self.known))
        done = [allocate_lock() for _ in range(self.workers + self.fetchers)]
        for lock in done:
            lock.acquire()
            start_new_thread(self._worker, (lock,))
        reader = Reader(in_fd)
        closing_id = None
        try:
            while (line := reader.readline()) is not None:
                if not line.strip():
                    continue
                closing_id = self._dispatch(reader, decode(line))
                if closing_id is not None:
                    break
        finally:
            for _ in done:
                self._jobs.put(None)
            for lock in done:
                lock.acquire()
            self._settle()
        if closing_id is not None:
            if self.finish_first:
                self.finish()
            self._send(response(closing_id))
        return 0

    def _settle(self) -> None:
        """Before answering close (the go command may read the stats as soon as it exits)."""
        self.stats.corrupt = self.store.corrupt - self._corrupt_before
        if self.remote is not None:
            self.stats.remote = self.remote.close(self.trace)
        if self.stats_file:
            store = self.store
            try:
                extra = {"resident": True} if self.resident else {}
                self.stats.append_to(self.stats_file, dir=store.root, namespace=self.namespace,
                                     read_only=store.read_only, refill=self.refill, **extra)  # fmt: skip
            except OSError as e:
                sys.stderr.write(f"gocaas cacheprog: cannot write stats to {self.stats_file}: {e}\n")
        if not self.store.read_only and self.store.added:
            try:
                self.store.flush_usage()
            except OSError as e:
                sys.stderr.write(f"gocaas cacheprog: cannot update the usage estimate: {e}\n")

    def _dispatch(self, reader: Reader, req: dict[str, object]) -> int | None:
        rid = req.get("ID")
        if type(rid) is not int:
            raise ProtocolError(f"request without an integer ID: {req!r}")
        command = req.get("Command")
        if command == "get":
            self._submit(reader, self._get, rid, req.get("ActionID"))
        elif command == "put":
            self._put(reader, rid, req)
        elif command == "close":
            return rid
        else:
            self._reply(rid, response(rid, err=f"unknown command {command!r}"))
        return None

    def _submit(self, reader: Reader, fn: object, *args: object) -> None:
        """Run the job here unless more requests are already waiting: then the pool takes it, so that they
        need not wait for it. (Handing every job to a thread costs a wake-up, ~10 µs on an idle machine,
        and the go command mostly sends one request at a time: answering here is faster when it does.)"""
        if self.workers and reader.pending():
            self._jobs.put((fn, args))
        else:
            self._run(fn, args)

    def _worker(self, done: object) -> None:
        try:
            while (job := self._jobs.get()) is not None:
                self._run(*job)
        finally:
            done.release()  # type: ignore[attr-defined]

    def _run(self, fn: object, args: tuple[object, ...]) -> None:
        try:
            fn(*args)  # type: ignore[operator]
        except Exception as e:  # the go command treats an error as a miss (get) or ignores it (put)
            rid = args[0]
            assert isinstance(rid, int)
            with self._lock:
                self.stats.errors += 1
            self._reply(rid, response(rid, err=f"gocaas cacheprog: {type(e).__name__}: {e}"))

    def _get(self, rid: int, action_id: object) -> None:
        aid = unb64(action_id, "ActionID")
        if self.refill:
            self._answer_get(rid, None)
            return
        found = self.store.lookup(self.namespace, aid)
        if found is None and self.remote is not None:
            found = self.remote.prefetched(aid)  # on disk, its entry not yet written (prefetch.py)
            if found is None:
                self._jobs.put((self._get_remote, (rid, aid)))
                return
        self._answer_get(rid, found, aid)

    def _get_remote(self, rid: int, action_id: bytes) -> None:
        assert self.remote is not None
        self._answer_get(rid, self.remote.fetch(action_id), action_id)

    def _answer_get(self, rid: int, found: tuple[Entry, str] | None, action_id: bytes = b"") -> None:
        if found is None:
            entry = None
            data = response(rid, miss=True)
        else:
            entry, path = found
            if not entry.answer:  # kept with the entry: a resident store hands out the same one again
                entry.answer = hit_answer(entry.output_id, entry.size, entry.time_ns, path)
            data = b'{"ID":%d' % rid + entry.answer
        with self._lock:
            stats = self.stats
            stats.gets += 1
            if entry is None:
                stats.misses += 1
            else:
                stats.hits += 1
                stats.hit_bytes += entry.size
                self.trace.append(action_id)
            self._write(data)

    def _put(self, reader: Reader, rid: int, req: dict[str, object]) -> None:
        size = req.get("BodySize") or 0
        if type(size) is not int or size < 0:
            raise ProtocolError(f"bad BodySize in {req!r}")
        writer: ObjectWriter | None = None
        try:
            action_id = unb64(req.get("ActionID"), "ActionID")
            output_id = unb64(req.get("OutputID") or req.get("ObjectID"), "OutputID")
            if self.store.holds(output_id, size):
                self._put_known(reader, rid, action_id, output_id, size)
                return
            writer = self.store.writer()
        except Exception as e:
            if size:
                reader.read_body(lambda _data: None)  # keep the stream in step
            self._run(_raise, (rid, e))
            return
        try:
            got = reader.read_body(writer.write) if size else 0
        except BaseException:
            writer.abort()
            raise
        if got != size:
            writer.abort()
            self._run(_raise, (rid, ValueError(f"put body is {got} bytes, BodySize says {size}")))
            return
        self._submit(reader, self._commit, rid, action_id, output_id, writer)

    def _put_known(self, reader: Reader, rid: int, action_id: bytes, output_id: bytes, size: int) -> None:
        """A put of an object the store already holds (go test puts most objects more than once: the same
        archive for several actions, empty outputs): the body is only hashed, to check the claim, and no
        temp file is made for it, which on a busy disk costs more than all the rest of a put."""
        hasher = sha256()
        got = reader.read_body(hasher.update) if size else 0
        if got != size or hasher.digest() != output_id:
            error = CacheError(f"body of {got} bytes does not hash to output ID {output_id.hex()}")
            self._run(_raise, (rid, error))
            return
        self._submit(reader, self._commit_entry, rid, action_id, output_id, size)

    def _commit_entry(self, rid: int, action_id: bytes, output_id: bytes, size: int) -> None:
        entry = self.store.put_entry(self.namespace, action_id, output_id, size)
        self._answer_put(rid, action_id, entry, new=False)

    def _commit(self, rid: int, action_id: bytes, output_id: bytes, writer: ObjectWriter) -> None:
        entry, new = self.store.commit(self.namespace, action_id, output_id, writer)
        self._answer_put(rid, action_id, entry, new=new)

    def _answer_put(self, rid: int, action_id: bytes, entry: Entry, *, new: bool) -> None:
        store = self.store
        data = response(rid, disk_path=store.path(entry.output_id))
        with self._lock:
            self.stats.puts += 1
            self.stats.put_bytes += entry.size
            if new:
                self.stats.put_new_bytes += entry.size
            self.trace.append(action_id)
            self._write(data)
        if self.remote is not None:
            self.remote.upload(action_id, entry)
        if store.over_budget and self._gc_running.acquire(False):
            start_new_thread(self._gc, (True,))

    def _gc(self, background: bool = False) -> None:
        """The store is over its budget or its disk under min_free: maintenance.auto_gc."""
        from gocaas.cache.maintenance import auto_gc, disk_note

        try:
            if note := disk_note(auto_gc(self.store), self.store):
                sys.stderr.write(f"gocaas cacheprog: {note}\n")
        except Exception as e:  # a failed gc must not fail the build
            sys.stderr.write(f"gocaas cacheprog: gc failed: {e}\n")
        finally:
            if background:
                self._gc_running.release()

    def _reply(self, rid: int, data: bytes) -> None:
        with self._lock:
            self._write(data)

    def _send(self, data: bytes) -> None:
        with self._lock:
            self._write(data)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._out, view) :]

    @property
    def work_after_close(self) -> bool:
        """Whether `finish` has anything to do: a remote tier to wind down (prefetched entries to write),
        a gc running or one due."""
        return self.remote is not None or self.store.over_budget or self._gc_running.locked()

    def finish(self) -> None:
        """After the session, stdout closed (the go command no longer waits; with finish_first, before close
        is answered): finish or run a due gc."""
        self.finished = True
        if self.remote is not None:
            self.remote.cleanup()
        with self._gc_running:
            if self.store.over_budget:
                self._gc()


def _raise(rid: int, error: Exception) -> None:
    raise error


LOG_NAME = "cacheprog.log"  # in the store: what cacheprog says after it let go of the go command's stderr


def detach_stderr(store_root: str, *, read_only: bool = False) -> None:
    """Let go of the go command's stderr before work that outlives the session. The go command exits
    without waiting for us, but whoever reads its stderr (gocaas, `go build 2>&1 | tee`) waits until every
    writer has closed it, so writing the prefetched entries or a gc would otherwise count as the go
    command's own time. Anything said later goes to the store's log (nowhere for a read-only store)."""
    sys.stderr.flush()
    log = os.devnull if read_only else f"{store_root}/{LOG_NAME}"
    try:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError:  # a store we cannot write to: say nothing rather than hold the pipe
        fd = os.open(os.devnull, os.O_WRONLY)
    os.dup2(fd, 2)
    os.close(fd)


def _handed_to_resident(opts: Options) -> bool:
    """--resident: whether a resident program took the go command; if none did, start one for the next."""
    from gocaas.cache.resident import attach, resident_key, socket_path, spawn

    key = resident_key(opts)
    path = socket_path(key, opts.runtime_dir)
    if path is None:
        return False
    if attach(key, path, opts.stats, opts.namespace):
        return True
    if opts.read_only:
        log = os.devnull
    else:
        os.makedirs(opts.dir, exist_ok=True)  # noqa: PTH103 - pathlib costs start-up time
        log = f"{opts.dir}/{LOG_NAME}"
    spawn(opts, os.path.dirname(path), log)  # noqa: PTH120
    return False


def main(argv: list[str] | None = None) -> int:
    """Run one GOCACHEPROG session on stdin/stdout. Exit status 0; 2 for bad usage; 1 for a fatal error."""
    args = sys.argv[1:] if argv is None else argv
    if "-h" in args or "--help" in args:
        sys.stdout.write(USAGE)
        return 0
    try:
        opts = parse_args(args)
    except Exception as e:
        sys.stderr.write(f"gocaas cacheprog: {e}\n{USAGE}")
        return 2
    if opts.resident_serve:
        from gocaas.cache.resident_server import serve_resident

        return serve_resident(opts)
    if opts.attach_fd is not None:
        from gocaas.cache.handoff import receive

        try:
            if not receive(opts.attach_fd, opts.attach_parent):
                return 0  # the go command never asked
        except OSError as e:
            sys.stderr.write(f"gocaas cacheprog: --attach-fd {opts.attach_fd}: {e}\n")
            return 1
    if opts.resident and _handed_to_resident(opts):
        return 0
    store = Store(
        opts.dir,
        read_only=opts.read_only,
        max_size=opts.max_size,
        min_age_s=opts.min_age,
        verify_limit=opts.verify_limit,
        min_free=opts.min_free,
    )
    if opts.refill and not opts.read_only:
        store.bump_epoch()  # resident programs forget the entries this session replaces
    remote = lazy_remote(store, opts)
    server = Server(
        store,
        opts.namespace,
        workers=opts.workers,
        stats_file=opts.stats,
        remote=remote,
        refill=opts.refill,
        finish_first=opts.finish_first,
    )
    status = 0
    try:
        server.serve(0, 1)
    except (BrokenPipeError, KeyboardInterrupt):
        status = 1
    except ProtocolError as e:
        sys.stderr.write(f"gocaas cacheprog: protocol error: {e}\n")
        status = 1
    except Exception as e:  # a bug or a broken store: say so, and the go command stops with our message
        sys.stderr.write(f"gocaas cacheprog: internal error: {type(e).__name__}: {e}\n")
        status = 1
    finally:
        try:  # noqa: SIM105 - contextlib costs 2 ms of start-up
            os.close(1)  # end of our stdout: the go command stops waiting for us here
        except OSError:
            pass
    try:
        if server.finished:  # before close (--finish-before-close)
            return status
        if server.work_after_close:
            detach_stderr(store.root, read_only=store.read_only)
        server.finish()
    except Exception as e:
        sys.stderr.write(f"gocaas cacheprog: {e}\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
