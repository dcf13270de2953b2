"""Where a batch's per-file work runs: in this process (``local``, the default) or on a Ray cluster (``ray``).

A batch command (``scan``, folder-mode ``watermark embed`` / ``detect``, ``detect score``, the file stages of
``eval report``) describes its per-file work as a *job*: a picklable object whose ``open()`` loads what the
work needs once (models, engines) and returns ``process(items) -> iterator of results``, one result per item,
in order, never raising for a bad item (a bad file is its error row).  ``run_job(job, items, executor)``
runs it and yields ``(index, result)`` pairs:

- ``local``: ``job.open()`` here and ``process(items)`` over every item, in input order (the code path the
  commands always had: decoding threads, windows batched across files).
- ``ray``: ``ExecutorSpec.workers`` Ray actors each call ``job.open()`` once (the job, with its loaded model,
  travels to each actor once) and then process batches of ``batch_files`` items; results come back in the
  order batches finish, and the driver yields them as they arrive.  A worker process that dies (killed, out of
  memory, a node lost) is restarted by Ray and its batches are retried (``max_retries``); a batch that still
  fails is split into single files, each then run alone on a worker, so that only a file that kills its worker
  every time ends as that file's error row (``job.failed(item, reason)``).  Every item is yielded exactly once.

Ray is optional (``pip install 'voiceguard[ray]'``); ``local`` needs nothing extra.  Ray: Moritz et al.,
"Ray: A Distributed Framework for Emerging AI Applications", OSDI 2018; https://docs.ray.io.
"""
from __future__ import annotations

import os
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

from .errors import VoiceguardError

EXECUTORS = ("local", "ray")
#: batches queued on each Ray actor beyond the one it is working on (keeps actors busy while the driver writes)
_QUEUE_PER_ACTOR = 2
#: seconds between two probes of an actor that is restarting
_UNAVAILABLE_WAIT_S = 0.5


class ExecutorError(VoiceguardError):
    """The executor cannot run: Ray is not installed, the cluster cannot be reached, has too few CPUs, or the
    workers could not load the job."""


class FileJob(Protocol):
    """Per-file work that can run in this process or in a Ray actor (it must pickle: module-level classes and
    loaded models do)."""

    def open(self) -> Callable[[list], Iterator[Any]]:
        """Load what the work needs (once per worker) and return ``process(items)``: one result per item, in
        order; a bad item is its error result, never an exception."""

    def failed(self, item: Any, reason: str) -> Any:
        """The result of an item whose worker could not process it (``reason`` says why)."""


@dataclass(frozen=True)
class ExecutorSpec:
    """How to run a batch.

    Attributes:
        kind: ``"local"`` (this process) or ``"ray"``.
        address: Ray only: None starts a private Ray instance on this machine (stopped at the end);
            ``"auto"`` joins the cluster this machine belongs to (``ray start --head`` / ``--address``);
            ``"HOST:PORT"`` the cluster whose head is there; ``"ray://HOST:10001"`` through Ray Client.
        workers: Ray actors (each holds the model once); None: the cluster's CPUs // ``cpus_per_worker``
            (at least 1).
        cpus_per_worker: CPUs each actor reserves; it also runs that many torch threads.
        batch_files: the most files per task sent to an actor (larger: less scheduling overhead per file;
            smaller: finer load balance and less work redone after a failure); a short run uses smaller tasks,
            so that each worker gets at least two.
        max_retries: times a task is retried after its worker process died, before it is split into single
            files (and each single file, run alone on a worker, is retried as often).
        startup_timeout_s: seconds to wait for the actors to start and load the job (a cluster that must
            scale up can take minutes).
        stats: filled by ``run_job`` (Ray): ``startup_s`` (connecting aside: actors started and the job
            opened), ``workers``, ``tasks``, ``compute_s`` (seconds the actors spent in ``process``), ``failures``
            (attempts charged: a worker died running the task, or the job raised), ``lost`` (workers given up),
            ``split`` (batches split into single files), ``restarts`` (workers seen back
            after a failure), ``pids`` (the actors' processes at the start) and ``pids_seen`` (the processes that
            returned results: a restarted actor is a new one); benchmarks and tests read it.
    """

    kind: str = "local"
    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float = 1.0
    batch_files: int = 8
    max_retries: int = 2
    startup_timeout_s: float = 600.0
    stats: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if self.kind not in EXECUTORS:
            raise ExecutorError(f"unknown executor {self.kind!r}; one of {', '.join(EXECUTORS)}")
        if self.workers is not None and self.workers < 1:
            raise ExecutorError(f"workers must be at least 1, got {self.workers}")
        if not self.cpus_per_worker > 0:
            raise ExecutorError(f"cpus_per_worker must be positive, got {self.cpus_per_worker}")
        if self.batch_files < 1:
            raise ExecutorError(f"batch_files must be at least 1, got {self.batch_files}")
        if self.max_retries < 0:
            raise ExecutorError(f"max_retries must be >= 0, got {self.max_retries}")

    @property
    def is_local(self) -> bool:
        return self.kind == "local"


LOCAL = ExecutorSpec()


def as_spec(executor: "ExecutorSpec | str | None") -> ExecutorSpec:
    """``executor`` as an ``ExecutorSpec``: None and ``"local"`` are the local executor, ``"ray"`` a private
    Ray instance with default settings."""
    if executor is None:
        return LOCAL
    if isinstance(executor, str):
        return ExecutorSpec(executor)
    if isinstance(executor, ExecutorSpec):
        return executor
    raise TypeError(f"executor must be an ExecutorSpec, 'local' or 'ray', not {type(executor).__name__}")


def ray_available() -> bool:
    """Ray is importable (the ``ray`` extra is installed)."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def run_job(job: FileJob, items: Sequence, executor: ExecutorSpec | str | None = None) -> Iterator[tuple[int, Any]]:
    """Run ``job`` over ``items``; yields ``(index into items, result)`` once per item.

    Local: ``job.open()`` now, then ``process`` over the items as they are asked for, in input order.  Ray: the
    workers are started and have loaded the job when this returns (so its errors come before any result); the
    results come in the order batches finish.  Closing the iterator (or reaching its end) stops the actors, and
    a Ray instance this call started (outside a ``session`` each Ray run starts and stops its own).  No items:
    nothing is started.

    Raises:
        ExecutorError: Ray is not installed, the cluster cannot be reached, a private instance has too few CPUs
            for the workers asked, the job cannot be sent to the workers, or they fail to start or load it
            within ``startup_timeout_s``.
    """
    spec = as_spec(executor)
    items = list(items)
    if not items:
        return iter(())
    if spec.is_local:
        process = job.open()
        return enumerate(process(items))
    return _RayRun(job, items, spec)


def ordered(pairs: Iterable[tuple[int, Any]], n: int) -> list:
    """The results of ``run_job`` as a list in input order (``n`` items)."""
    out: list = [None] * n
    for i, r in pairs:
        out[i] = r
    return out


# --------------------------------------------------------------------------- Ray
class _Worker:
    """The body of a Ray actor: a job opened once per worker process; ``run`` processes one batch and times it.

    The job comes with each call as a reference inside a list (Ray hands it over unresolved): the first call of a
    (re)started worker, or the first call of another job (actors are reused within a ``session``), fetches and
    opens it; later calls reuse it.  A constructor argument would be lost with the object when a restarted actor
    needs it again; a call argument is kept alive by the driver for the whole run.
    """

    def __init__(self, threads: int):
        self.threads = max(1, threads)
        self.job_id = None
        self.process = None

    def _open(self, job_box: list):
        job_id = job_box[0].hex()
        if self.job_id != job_id:
            import sys

            import ray

            self.process = None  # the previous job (and its model) can go
            job = ray.get(job_box[0])
            if "torch" in sys.modules:  # the job holds torch models: as many threads as CPUs reserved
                sys.modules["torch"].set_num_threads(self.threads)
            self.process = job.open()
            self.job_id = job_id
        return self.process

    def ready(self, job_box: list) -> int:
        self._open(job_box)
        return os.getpid()

    def run(self, job_box: list, items: list) -> tuple[list, float, int]:
        t = time.perf_counter()
        out = list(self._open(job_box)(items))
        return out, time.perf_counter() - t, os.getpid()


#: actors kept by the open ``session``s, by CPUs per worker: reused by every run_job inside
_POOLS: list[dict] = []


@contextmanager
def session(executor: "ExecutorSpec | str | None") -> Iterator[None]:
    """Within the block, Ray is connected as ``executor`` asks (a private instance is started, or the cluster
    joined) and every ``run_job`` uses that connection and the same actors (started by the first run of each
    size, then handed each run's job: a report's many scoring stages start their workers once); at the end the
    actors are stopped, and a private instance too.  A no-op for the local executor.  A command enters it before
    writing any output, so a cluster that cannot be reached is one error line, not a half-written file.  A
    session opened inside another one uses the outer one's connection and actors.

    Raises:
        ExecutorError: as ``run_job``.
    """
    spec = as_spec(executor)
    if spec.is_local or _POOLS:  # local, or inside another session: its connection and actors serve
        yield
        return
    ray, started = _init_ray(spec)
    pool: dict = {}
    _POOLS.append(pool)
    try:
        yield
    finally:
        _POOLS.remove(pool)
        for actors in pool.values():
            for a in actors:
                try:
                    ray.kill(a)
                except Exception:  # noqa: BLE001 - already gone
                    pass
        if started:
            ray.shutdown()


def _init_ray(spec: ExecutorSpec):
    """``ray`` initialised as ``spec`` asks; returns (ray module, True when this call started the instance)."""
    if not ray_available():
        raise ExecutorError("--executor ray needs Ray: pip install 'voiceguard[ray]' (or 'ray[default]')")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports (and none tried offline)
    import logging

    import ray

    _messages_to_stderr()
    if ray.is_initialized():
        return ray, False
    kw: dict[str, Any] = dict(logging_level=logging.ERROR, log_to_driver=False, configure_logging=True)
    try:
        if spec.address is None:
            cpus = os.cpu_count() or 1
            ray.init(num_cpus=cpus, include_dashboard=False, **kw)
        else:
            ray.init(address=spec.address, **kw)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = "a local Ray instance" if spec.address is None else f"the Ray cluster at {spec.address!r}"
        raise ExecutorError(f"cannot start or reach {where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                            ) from None
    return ray, True


def _messages_to_stderr() -> None:
    """Ray's driver prints cluster messages (a worker died, a task is retried) on stdout, where a command's JSON
    lines or CSV rows go; send them to stderr.  (``ray._private.worker.print_to_stdstream``, Ray's one printer of
    such messages: a private name, so a Ray without it is left as it is.)"""
    try:
        from ray._private import worker as ray_worker
    except ImportError:  # pragma: no cover - another Ray layout
        return
    original = getattr(ray_worker, "print_to_stdstream", None)
    if original is None or getattr(original, "voiceguard_stderr", False):
        return

    def to_stderr(data, *args, **kw):
        return original({**data, "is_err": True}, *args, **kw)

    to_stderr.voiceguard_stderr = True
    ray_worker.print_to_stdstream = to_stderr


class _RayRun:
    """One ``run_job`` on Ray: the actors started (eagerly) and the scheduler's results as an iterator; ``close``
    (also at the end, on an error, or when garbage-collected) stops the actors and a Ray instance it started."""

    def __init__(self, job: FileJob, items: list, spec: ExecutorSpec):
        self.ray, self.started = _init_ray(spec)
        self.actors: list = []
        self.owned = True  # False: the actors belong to the session (not stopped by close)
        self.closed = False
        try:
            self._gen = self._start(job, items, spec)
        except BaseException:
            self.close()
            raise

    def _start(self, job: FileJob, items: list, spec: ExecutorSpec) -> Iterator[tuple[int, Any]]:
        ray = self.ray
        cpus = float(ray.cluster_resources().get("CPU", 0))
        n_workers = spec.workers or max(1, int(cpus // spec.cpus_per_worker))
        if spec.address is None and n_workers * spec.cpus_per_worker > cpus:  # a cluster may scale up: it waits
            raise ExecutorError(f"{n_workers} worker(s) of {spec.cpus_per_worker:g} CPU need "
                                f"{n_workers * spec.cpus_per_worker:g} CPUs; this machine's Ray instance has {cpus:g}")
        t0 = time.perf_counter()
        try:
            job_box = [ray.put(job)]  # the job (and its model) is stored once, read by each actor
        except Exception as e:  # noqa: BLE001 - cloudpickle raises several types
            raise ExecutorError(f"the job cannot be sent to Ray workers ({type(e).__name__}: {e})") from None
        # Ray restarts a dead actor; the scheduler (not Ray) retries its tasks, so that it knows which failed
        remote = ray.remote(num_cpus=spec.cpus_per_worker, max_restarts=-1, max_task_retries=0)(_Worker)
        threads = max(1, int(spec.cpus_per_worker))
        pool = _POOLS[-1] if _POOLS else None
        if pool is not None:  # the session's actors of this CPU size: reused (the first n), the new job handed over
            shared = pool.setdefault(spec.cpus_per_worker, [])
            shared += [remote.remote(threads) for _ in range(n_workers - len(shared))]
            self.actors, self.owned = shared[:n_workers], False
        else:
            n_workers = max(1, min(n_workers, len(items)))
            self.actors, self.owned = [remote.remote(threads) for _ in range(n_workers)], True
        pids = _await_ready(ray, self.actors, job_box, spec.startup_timeout_s)
        spec.stats.update(startup_s=time.perf_counter() - t0, workers=len(self.actors), tasks=0, compute_s=0.0,
                          failures=0, split=0, restarts=0, lost=0, pids=list(pids), pids_seen=set())
        # at most batch_files per task, and at least two tasks per worker: a few files still spread over all workers
        batch = max(1, min(spec.batch_files, -(-len(items) // (2 * len(self.actors)))))
        return _schedule(ray, self.actors, job_box, job, items, spec, self._drop, batch)

    def _drop(self, actor) -> None:
        """An actor given up: killed, and no longer in its session's pool (the next run starts another)."""
        for shared in (_POOLS[-1].values() if _POOLS else ()):
            if actor in shared:
                shared.remove(actor)

    def __iter__(self):
        return self

    def __next__(self) -> tuple[int, Any]:
        try:
            return next(self._gen)
        except BaseException:  # the end, an error, or Ctrl-C: stop the workers
            self.close()
            raise

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        gen = getattr(self, "_gen", None)
        if gen is not None:
            gen.close()
        for a in self.actors if self.owned else ():
            try:
                self.ray.kill(a)
            except Exception:  # noqa: BLE001 - already gone
                pass
        if self.started:
            self.ray.shutdown()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def _await_ready(ray, actors: list, job_box: list, timeout_s: float) -> list[int]:
    """Each actor's process id once it has opened the job.  An actor that is restarting (a session's actor whose
    process died in an earlier run) is asked again until ``timeout_s``.

    Raises:
        ExecutorError: an actor failed to open the job, or not all were ready within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    pids: dict[int, int] = {}
    pending = {actors[k].ready.remote(job_box): k for k in range(len(actors))}
    while pending:
        left = deadline - time.monotonic()
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.0, left))
        if not ready:
            raise ExecutorError(f"{len(pending)} of {len(actors)} Ray worker(s) did not start within {timeout_s:g} s "
                                "(too few free CPUs in the cluster?)")
        k = pending.pop(ready[0])
        try:
            pids[k] = ray.get(ready[0])
        except ray.exceptions.RayTaskError as e:  # the job's open() raised
            raise ExecutorError(f"a Ray worker could not load the job: {_short(e)}") from None
        except ray.exceptions.RayError as e:  # the actor is (re)starting or died: ask it again
            if time.monotonic() > deadline:
                raise ExecutorError(f"a Ray worker could not start: {_short(e)}") from None
            time.sleep(_UNAVAILABLE_WAIT_S)
            pending[actors[k].ready.remote(job_box)] = k
    return [pids[k] for k in range(len(actors))]


def _unfinished(ray, refs: list) -> list:
    """The tasks of ``refs`` that have not finished successfully (still running, queued, or failed)."""
    if not refs:
        return []
    done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
    ok = set()
    for r in done:
        try:
            ray.get(r)
            ok.add(r)
        except ray.exceptions.RayError:
            pass
    return [r for r in refs if r not in ok]


def _short(e: BaseException) -> str:
    """The first meaningful line of a Ray error (Ray's messages carry tracebacks)."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException) and str(cause):
        return f"{type(cause).__name__}: {str(cause).splitlines()[0]}"
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    return lines[-1] if lines else type(e).__name__


def _schedule(ray, actors: list, job_box: list, job: FileJob, items: list, spec: ExecutorSpec,
              drop: Callable[[Any], None] = lambda actor: None, batch: int | None = None
              ) -> Iterator[tuple[int, Any]]:
    """Hand batches to actors, yield results as batches finish, and deal with workers that die.

    When an actor's process dies, every task on it fails; only the oldest (the one it was running) is charged an
    attempt, the ones queued behind it go back to the queue as they were.  A charged batch is retried up to
    ``max_retries`` times, then split into single files.  A single file from a split batch is a *suspect*: it runs
    alone on an actor (nothing else queued there), so a death during it is its own; after ``max_retries`` more
    failures it is that file's error row.  An exception raised by the job itself (a bug: ``process`` must not
    raise) is charged the same way, but the actor is not down.  A dead actor gets no work until a probe says it
    is back (Ray restarts it); one not back within ``startup_timeout_s`` is given up, and when no actor is left
    the remaining files become error rows.
    """
    # (indices, attempts so far, suspect)
    batch = batch or spec.batch_files
    todo: deque[tuple[list[int], int, bool]] = deque(
        (list(range(i, min(i + batch, len(items)))), 0, False) for i in range(0, len(items), batch))
    inflight: dict[Any, tuple[int, list[int], int, bool, int]] = {}  # ref -> (actor, indices, attempts, suspect, seq)
    n = len(actors)
    load, exclusive = [0] * n, [False] * n
    down_since: list[float | None] = [None] * n  # when the actor's death was seen (None: up)
    culprit: dict[int, int] = {}  # actor -> seq of the task it was running when it died (not yet charged)
    probes: dict[Any, int] = {}  # probe reference -> actor
    probe_after: dict[int, float] = {}  # actor -> when to send its next probe
    lost: set[int] = set()
    seq = 0
    task_error = getattr(ray.exceptions, "RayTaskError", ())

    def usable(k: int, suspect: bool) -> bool:
        if k in lost or down_since[k] is not None or exclusive[k]:
            return False
        return load[k] == 0 if suspect else load[k] <= _QUEUE_PER_ACTOR

    def release(ref) -> tuple[int, list[int], int, bool, int]:
        k, idx, attempts, suspect, s = inflight.pop(ref)
        load[k] -= 1
        if suspect:
            exclusive[k] = False
        return k, idx, attempts, suspect, s

    def charge(idx: list[int], attempts: int, suspect: bool, why: str) -> Iterator[tuple[int, Any]]:
        spec.stats["failures"] += 1
        attempts += 1
        if attempts <= spec.max_retries:
            todo.appendleft((idx, attempts, suspect))
        elif len(idx) > 1:  # split: only a file that fails on its own becomes an error row
            spec.stats["split"] += 1
            todo.extendleft(([i], 0, True) for i in reversed(idx))
        else:
            yield idx[0], job.failed(items[idx[0]], f"the worker failed on this file {attempts} time(s) ({why})")

    while todo or inflight:
        while todo:  # first in, first out: a suspect waits for an idle actor
            idx, attempts, suspect = todo[0]
            free = [k for k in range(n) if usable(k, suspect)]
            if not free:
                break
            k = min(free, key=load.__getitem__)
            todo.popleft()
            ref = actors[k].run.remote(job_box, [items[i] for i in idx])
            seq += 1
            inflight[ref] = (k, idx, attempts, suspect, seq)
            load[k] += 1
            exclusive[k] = suspect
            spec.stats["tasks"] += 1
        now = time.monotonic()
        for k in range(n):  # dead actors: probe them; give up those not back in time
            if down_since[k] is None or k in lost:
                continue
            if now - down_since[k] > spec.startup_timeout_s:
                lost.add(k)
                spec.stats["lost"] += 1
                for ref in [r for r, v in probes.items() if v == k]:
                    del probes[ref]
                probe_after.pop(k, None)
                for ref in [r for r, v in inflight.items() if v[0] == k]:  # they may never return
                    _, idx, attempts, suspect, _ = release(ref)
                    todo.appendleft((idx, attempts, suspect))
                try:
                    ray.kill(actors[k], no_restart=True)
                except Exception:  # noqa: BLE001 - already gone
                    pass
                drop(actors[k])
            elif k in probe_after and probe_after[k] <= now:
                del probe_after[k]
                probes[actors[k].ready.remote(job_box)] = k
        if len(lost) == n:  # no actor left: what remains cannot run
            for idx, _, _ in todo:
                for i in idx:
                    yield i, job.failed(items[i], "every Ray worker was lost (none restarted within "
                                                  f"{spec.startup_timeout_s:g} s)")
            todo.clear()
            return
        waiting = list(inflight) + list(probes)
        any_down = any(d is not None for d in down_since)
        if not waiting:
            time.sleep(_UNAVAILABLE_WAIT_S)
            continue
        ready, _ = ray.wait(waiting, num_returns=1, timeout=_UNAVAILABLE_WAIT_S if any_down else None)
        if not ready:
            continue
        ref = ready[0]
        if ref in probes:
            k = probes.pop(ref)
            try:
                ray.get(ref)
            except ray.exceptions.RayError:
                probe_after[k] = time.monotonic() + _UNAVAILABLE_WAIT_S
                continue
            down_since[k] = None
            spec.stats["restarts"] += 1
            continue
        k, idx, attempts, suspect, s = release(ref)
        try:
            results, seconds, pid = ray.get(ref)
        except task_error as e:  # the job raised: the actor is fine, the batch is charged
            yield from charge(idx, attempts, suspect, _short(e))
            continue
        except ray.exceptions.RayError as e:  # the actor died (or was restarting)
            if down_since[k] is None:  # first news of this death: its oldest unfinished task was running
                down_since[k] = time.monotonic()
                probe_after[k] = time.monotonic()
                culprit[k] = min([s] + [inflight[r][4] for r in _unfinished(ray, [r for r, v in inflight.items()
                                                                                   if v[0] == k])])
            if culprit.get(k) == s:
                del culprit[k]
                yield from charge(idx, attempts, suspect, _short(e))
            else:  # it was only queued there: back to the queue as it was
                todo.appendleft((idx, attempts, suspect))
            continue
        spec.stats["compute_s"] += seconds
        spec.stats["pids_seen"].add(pid)
        if len(results) != len(idx):  # a job that broke its contract: say so for each file, do not guess
            for i in idx:
                yield i, job.failed(items[i], f"internal error: the worker returned {len(results)} results "
                                              f"for {len(idx)} files")
            continue
        yield from zip(idx, results)


__all__ = ["EXECUTORS", "ExecutorError", "ExecutorSpec", "FileJob", "LOCAL", "as_spec", "ordered", "ray_available",
           "run_job", "session"]
