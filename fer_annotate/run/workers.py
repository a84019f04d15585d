"""Spread a folder's videos over workers: local processes (`--workers N`) or Ray actors (`--ray [ADDRESS]`).

A video is the unit of work. Every worker builds its own detector and ensemble once, when it starts, and
then runs `jobs.run_job` on one video after another, so resume (complete outputs of the same source are
skipped), the per-output locks, atomic outputs and one-line failures are exactly those of a single
process. The driver keeps the list of videos and hands the next one to whichever worker is idle. A worker
that dies mid-video fails that video only (its temporary files and lock are removed; a rerun redoes it)
and is replaced. A stop signal (SIGTERM, SIGINT, SIGHUP: `signals`) stops every worker, each removing its
video's temporary files and lock, and ends the run.

Local workers are `concurrent.futures` process pools of one process each (forked on CPU, spawned for GPUs:
`start_method`), so that a dead process breaks only its own pool and the driver knows which video it held. Ray
workers are actors; outputs are written by the actors straight into the `-o` folder, which therefore has to be
storage that every node reaches at the same path: a probe file written by each worker and read back by the
driver checks that.
"""

import atexit
import multiprocessing
import os
import queue
import socket
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch

from fer_annotate.models.bundle import Bundle
from fer_annotate.outputs.output import remove_path, stale_temps
from fer_annotate.run.jobs import Job, JobReport, JobResult, run_job, run_jobs
from fer_annotate.run.lock import lock_path
from fer_annotate.run.pipeline import AnnotateConfig, Annotator
from fer_annotate.run.signals import GRACE_S, Stopped, as_worker, guarded, reclaim, remove_left_by, stop_processes
from fer_annotate.run.threads import apply_torch_threads, available_cores, core_sets, pin_to, plan_threads

# Peak resident memory of one worker with the paper-shaped ensemble (README, "Speed and memory": 1.5-1.8 GiB).
WORKER_MEMORY = 2 * 1024**3
# How long the driver waits for a first Ray worker before it gives up (model loading included).
RAY_READY_TIMEOUT_S = 600.0
PROBE_PREFIX = ".fer-annotate-probe-"


class WorkerError(Exception):
    """Workers that cannot start, a Ray cluster that cannot be reached, or an output folder not shared."""


@dataclass
class WorkerSpec:
    """What each worker needs to build its own annotator (the models are loaded in the worker, once).

    `bundle` is the bundle the driver resolved (None: faces only). A worker that cannot see its folder
    (another node) resolves `weights` in its own cache, and must find the same member checksums.
    `threads` is one worker's CPU thread budget (`--threads`, decoder included); None: an equal share of the
    machine's cores between the `workers` that run on it (`threads.plan_threads`).
    """

    config: AnnotateConfig
    bundle: Bundle | None = None
    weights: str | None = None
    smooth: str = "gauss"
    note: str = ""
    threads: int | None = None
    workers: int = 1


@dataclass
class Events:
    """What the driver reports while workers run: a video handed out, its frames, its outcome line."""

    on_start: Callable[[Job], None] | None = None
    on_frames: Callable[[Job, int, int], None] | None = None
    on_end: Callable[[Job, str], None] | None = None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def build_annotator(spec: WorkerSpec, device: str) -> Annotator:
    """The detector and (unless faces only) the bundle's model stage on `device`, in a process whose torch
    threads follow the worker's thread plan."""
    plan = plan_threads(spec.threads, spec.workers)
    apply_torch_threads(plan)
    config = replace(spec.config, device=device, detector=replace(spec.config.detector, device=device),
                     decode_threads=plan.decode, parallel_stages=plan.cores > 1)
    if spec.bundle is None:
        return Annotator(config, None)
    from fer_annotate.models.bundle import load_bundle
    from fer_annotate.models.model import ModelStage
    from fer_annotate.models.weights import resolve_bundle

    wanted = spec.bundle
    if (wanted.path / "bundle.json").is_file():
        bundle = load_bundle(wanted.path)
    else:
        bundle = resolve_bundle(spec.weights)
    if [m.sha256 for m in bundle.members] != [m.sha256 for m in wanted.members]:
        raise WorkerError(f"{socket.gethostname()}: weights bundle {bundle.path} differs from the driver's "
                          f"{wanted.path} (member checksums); install the same bundle on every node")
    return Annotator(config, ModelStage(bundle, device, spec.smooth, spec.note, threads=plan.cores))


class AnnotatorWorker:
    """One worker: its annotator, built once. Held by a local process, or by a Ray actor (same class)."""

    def __init__(self, spec: WorkerSpec, device: str):
        self.error = ""
        self.annotator: Annotator | None = None
        try:
            self.annotator = build_annotator(spec, device)
        except Exception as exc:  # reported by ready(), so the driver prints it once and stops
            self.error = _one_line(exc)

    def ready(self, probe_dir: str | None = None, token: str = "") -> tuple[str, str]:
        """(host, error): error is "" when the models loaded and, with a probe, the output folder is shared.

        The driver wrote PROBE_PREFIX+token into probe_dir; the worker checks that it sees it and writes its
        own file, PROBE_PREFIX+token+"-"+host-pid, for the driver to find.
        """
        host = socket.gethostname()
        if self.error or probe_dir is None:
            return host, self.error
        folder = Path(probe_dir)
        try:
            seen = (folder / f"{PROBE_PREFIX}{token}").read_text() == token
        except OSError:
            seen = False
        if not seen:
            return host, _not_shared(folder, host, "cannot see the probe file the driver wrote there")
        try:
            (folder / f"{PROBE_PREFIX}{token}-{host}-{os.getpid()}").write_text(token)
        except OSError as exc:
            return host, f"{folder}: the worker on {host} cannot write there ({_one_line(exc)})"
        return host, ""

    def run(self, job: Job, overwrite: bool, arguments: dict | None,
            on_frames: Callable[[int, int], None] | None = None) -> JobResult:
        """Annotate one video with this worker's models (skipped if its complete output exists)."""
        if self.annotator is None:
            return JobResult(job, "failed", f"{job.video}: worker could not start: {self.error}")
        return run_job(self.annotator, job, overwrite, on_frames=on_frames, arguments=arguments)


def _not_shared(folder: Path, host: str, what: str) -> str:
    return (f"{folder}: not shared storage: the worker on {host} {what}; -o must be a folder that every node "
            f"reaches at the same path (NFS, a cluster file system)")


def remove_partials(output: Path) -> None:
    """Remove what a killed worker left beside `output`: its temporary files (they never look complete) and
    its lock (on another node the lock would otherwise be respected until removed by hand)."""
    for temp in stale_temps(output):
        remove_path(temp)
    lock_path(output).unlink(missing_ok=True)


def _available_memory() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return WORKER_MEMORY * available_cores()


def parse_workers(text: str | None) -> int | None:
    """`--workers`: None (default), a positive count, or 0 for `auto`; ValueError otherwise."""
    if text is None:
        return None
    if text.strip().lower() == "auto":
        return 0
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 1:
        raise ValueError(f"--workers {text}: expected a positive number or 'auto'")
    return n


def local_workers(requested: int | None, device: str, n_jobs: int) -> int:
    """How many local processes: the request; by default one per GPU with `--device cuda`, and on CPU
    `auto` when there are several videos (one process per core beat one process using every core: 0.51
    against 0.84 of the one-core time for 4 videos on 2 cores); `auto` (0): one per GPU, or on CPU one per
    core as far as memory allows (WORKER_MEMORY each)."""
    gpus = torch.cuda.device_count() if device == "cuda" else 0
    if requested is None and device == "cpu" and n_jobs > 1:
        requested = 0
    if requested is None:
        n = max(1, gpus)
    elif requested == 0:
        n = gpus or max(1, min(available_cores(), _available_memory() // WORKER_MEMORY))
    else:
        n = requested
    return max(1, min(n, n_jobs))


def _local_device(device: str, slot: int) -> str:
    """Worker `slot`'s device: round robin over the GPUs for `cuda`, else as asked."""
    if device == "cuda" and torch.cuda.device_count() > 1:
        return f"cuda:{slot % torch.cuda.device_count()}"
    return device


# --- local processes ------------------------------------------------------------------------------------

_worker: AnnotatorWorker | None = None
_progress: "multiprocessing.Queue | None" = None


def _init_local(spec: WorkerSpec, device: str, progress: "multiprocessing.Queue", cores: list[int] | None,
                driver: int) -> None:
    """Process-pool initializer: stop with the driver (pid `driver`), pin this process to its cores (its
    thread plan is then theirs), then load its detector and ensemble once."""
    global _worker, _progress
    as_worker(driver)
    atexit.register(_leave)
    if cores is not None and pin_to(cores):
        spec = replace(spec, workers=1)
    _worker, _progress = AnnotatorWorker(spec, device), progress


def start_method(spec: WorkerSpec, workers: int) -> str:
    """How local workers start: 'fork' for CPU workers whose torch runs on one thread (the automatic plan
    with a core or two per worker), else 'spawn'.

    A forked worker has the driver's imports already (torch, about 2 s a process); it loads its own models.
    A worker with one torch thread never enters an OpenMP parallel region, so the OpenMP state a fork
    leaves broken (where the driver used it: the command line's driver runs no torch operator, a Python
    caller may have) is never touched: torch's DataLoader workers rely on the same rule. GPUs need 'spawn'
    (a CUDA context does not survive a fork), and so do several torch threads per worker."""
    if spec.config.device != "cpu" or "fork" not in multiprocessing.get_all_start_methods():
        return "spawn"
    return "fork" if plan_threads(spec.threads, workers).torch == 1 else "spawn"


def slim_spec(spec: WorkerSpec) -> WorkerSpec:
    """The spec as shipped to a worker: the bundle without its provenance (the worker reads its own manifest
    and checks only the path and the member checksums).

    A spawned process reads its arguments only after it has imported the main module (seconds: torch), and
    the driver's write of arguments larger than a pipe's buffer (64 KiB) waits for that read, so a large
    payload made the workers start one after another instead of at once (a 140 KiB provenance did)."""
    if spec.bundle is None:
        return spec
    return replace(spec, bundle=replace(spec.bundle, provenance={}))


def _leave() -> None:
    """A worker's last step once its pool has let it go: exit without the interpreter's teardown of torch and
    the models (about a second, on the run's critical path). Registered last, so it runs first at exit;
    multiprocessing's own exit steps have run by then."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _local_ready() -> str:
    return _worker.ready()[1]


def _local_run(key: int, job: Job, overwrite: bool, arguments: dict | None) -> JobResult:
    def on_frames(done: int, total: int) -> None:
        _progress.put((key, done, total))

    return guarded(job.output, _worker.run, job, overwrite, arguments, on_frames)


def _died(job: Job, what: str) -> JobResult:
    remove_partials(job.output)
    return JobResult(job, "failed", f"{job.video}: the {what} annotating it died (killed, out of memory or a "
                                     f"crash in a native library); its output was not written, rerun to redo it")


def _stop_workers(pools: list[ProcessPoolExecutor], interrupted: list[Job]) -> None:
    """Stop every worker process now (a stop signal, or an error in the driver); remove what those that had
    to be killed left of their videos (temporary files, lock)."""
    processes = [p for pool in pools for p in (pool._processes or {}).values()]  # the pool's record of them
    stop_processes(processes)
    for job in interrupted:
        remove_left_by(job.output, {p.pid for p in processes})


def run_local(spec: WorkerSpec, jobs: list[Job], workers: int, overwrite: bool = False,
              arguments: dict | None = None, events: Events | None = None) -> JobReport:
    """Annotate `jobs` on `workers` local processes (`start_method`), each holding its own models; with the
    automatic thread plan (no `threads`) each process is pinned to its own share of the cores."""
    events = events or Events()
    ctx = multiprocessing.get_context(start_method(spec, workers))
    progress = ctx.Queue()
    pinned = core_sets(workers) if spec.threads is None else [None] * workers
    spec = slim_spec(spec)

    def start(slot: int) -> ProcessPoolExecutor:
        device = _local_device(spec.config.device, slot)
        return ProcessPoolExecutor(1, mp_context=ctx, initializer=_init_local,
                                   initargs=(spec, device, progress, pinned[slot], os.getpid()))

    pools = [start(slot) for slot in range(workers)]
    report = JobReport()
    running: dict[Future, tuple[int, int]] = {}
    try:
        # Every pool starts its process at its first submit: ask them all before waiting for any, so the
        # workers import and load their models at once rather than one after another.
        probes = [pool.submit(_local_ready) for pool in pools]
        for probe in probes:
            try:
                error = probe.result()
            except BrokenProcessPool:
                error = "a worker process died while loading the models"
            if error:
                raise WorkerError(error)
        pending = deque(enumerate(jobs))
        idle = list(range(workers))
        while pending or running:
            while idle and pending:
                slot, (key, job) = idle.pop(), pending.popleft()
                if events.on_start is not None:
                    events.on_start(job)
                running[pools[slot].submit(_local_run, key, job, overwrite, arguments)] = (slot, key)
            finished, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
            _drain(progress, jobs, events)
            for future in finished:
                slot, key = running.pop(future)
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    outcome = _died(jobs[key], "worker process")
                    pools[slot].shutdown(wait=False, cancel_futures=True)
                    pools[slot] = start(slot)
                report.add(outcome)
                if events.on_end is not None:
                    events.on_end(outcome.job, outcome.line)
                idle.append(slot)
    except BaseException:  # a stop signal or an error here: no worker may outlive the run
        _stop_workers(pools, [jobs[key] for _, key in running.values()])
        raise
    finally:
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)
    return report


def run_serial(annotator: Annotator, jobs: list[Job], overwrite: bool = False, arguments: dict | None = None,
               events: Events | None = None) -> JobReport:
    """One worker in this process (no process start; the models are already loaded): `run_jobs` with Events."""
    events = events or Events()
    current: list[Job] = []

    def on_start(job: Job) -> None:
        current[:] = [job]
        if events.on_start is not None:
            events.on_start(job)

    def on_frames(done: int, total: int) -> None:
        if events.on_frames is not None:
            events.on_frames(current[0], done, total)

    def on_end(result: JobResult) -> None:
        if events.on_end is not None:
            events.on_end(result.job, result.line)

    return run_jobs(annotator, jobs, overwrite, on_start, on_frames, on_end, arguments)


def _drain(progress: "multiprocessing.Queue", jobs: list[Job], events: Events) -> None:
    """Hand the workers' frame counts to the progress display."""
    while True:
        try:
            key, done, total = progress.get_nowait()
        except queue.Empty:
            return
        if events.on_frames is not None:
            events.on_frames(jobs[key], done, total)


# --- Ray --------------------------------------------------------------------------------------------------

def _ray():
    try:
        import ray
    except ImportError:
        raise WorkerError("--ray needs Ray: pip install 'fer-annotate[ray]'") from None
    return ray


def _connect(ray, address: str) -> bool:
    """Connect to the cluster (`auto`: RAY_ADDRESS, else a running local instance, else a new one);
    True when this call did the connecting (and so should disconnect)."""
    if ray.is_initialized():
        return False
    target = None if address == "auto" else address
    try:
        ray.init(address=target, log_to_driver=False, logging_level="ERROR")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise WorkerError(f"--ray {address}: cannot connect to the Ray cluster ({_one_line(exc)})") from None
    return True


@dataclass
class RayPlan:
    """How many actors, on which device, with which resources each."""

    actors: int
    device: str
    options: dict


def ray_plan(resources: dict, requested: int | None, device: str, threads: int, n_jobs: int) -> RayPlan:
    """Actors from the cluster's resources: on GPUs one per GPU (or `--workers N` sharing them with a
    fractional num_gpus); on CPUs one per `threads` cores as far as memory allows."""
    gpus = int(resources.get("GPU", 0))
    if device.startswith("cuda:"):
        raise WorkerError(f"--device {device} picks a GPU of this machine; with --ray use --device cuda "
                          f"(Ray places the workers on the cluster's GPUs)")
    if device == "auto":
        device = "cuda" if gpus else "cpu"
    if device == "cuda":
        if not gpus:
            raise WorkerError("--device cuda: the Ray cluster has no GPUs")
        n = requested or gpus
        share = -(-n // gpus)  # actors per GPU
        options = {"num_gpus": 1.0 / share, "num_cpus": 1, "memory": WORKER_MEMORY}
    else:
        cpus = int(resources.get("CPU", 1))
        memory = int(resources.get("memory", WORKER_MEMORY * cpus))
        n = requested or max(1, min(cpus // max(1, threads), memory // WORKER_MEMORY))
        options = {"num_cpus": max(1, threads), "memory": WORKER_MEMORY}
    return RayPlan(max(1, min(n, n_jobs)), device, options)


def run_ray(spec: WorkerSpec, jobs: list[Job], address: str = "auto", workers: int | None = None,
            overwrite: bool = False, arguments: dict | None = None, events: Events | None = None) -> JobReport:
    """Annotate `jobs` on Ray actors that each hold the models; the driver keeps the queue of videos.

    Every actor first checks that it sees the output folder (a probe file each way) and fails the run with
    one line when it does not.
    """
    events = events or Events()
    ray = _ray()
    jobs = [Job(j.video.absolute(), j.output.absolute()) for j in jobs]  # workers may run in another folder
    root = Path(os.path.commonpath([j.output.parent for j in jobs]))
    connected = _connect(ray, address)
    reclaim()  # Ray's init took SIGTERM over
    token = uuid.uuid4().hex  # this run's probe files; another driver's in the same folder are left alone
    actors: list = []
    running: dict = {}
    try:
        plan = ray_plan(ray.cluster_resources(), workers, spec.config.device, spec.threads or 1, len(jobs))
        actor_class = ray.remote(AnnotatorWorker)
        _write_probe(root, token)
        return _ray_loop(ray, actor_class, plan, spec, jobs, (root, token), overwrite, arguments, events, actors,
                         running)
    except SystemError as exc:  # Ray's blocking calls wrap what a signal handler raised during them
        if isinstance(exc.__cause__, Stopped):
            raise exc.__cause__ from None
        raise
    finally:
        for actor in actors:
            ray.kill(actor)
        if running:  # stopped mid-run: the killed actors' videos leave nothing behind
            ray.wait(list(running), num_returns=len(running), timeout=GRACE_S)
            for _, job in running.values():
                remove_partials(job.output)
        for path in root.glob(f"{PROBE_PREFIX}{token}*"):
            path.unlink(missing_ok=True)
        if connected:
            ray.shutdown()


def _write_probe(folder: Path, token: str) -> None:
    """The driver's probe file, which every worker must see."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{PROBE_PREFIX}{token}").write_text(token)


def _ray_loop(ray, actor_class, plan: RayPlan, spec: WorkerSpec, jobs: list[Job], probe: tuple[Path, str],
              overwrite: bool, arguments: dict | None, events: Events, actors: list, running: dict) -> JobReport:
    folder, token = probe
    actor_spec = replace(slim_spec(spec), threads=int(plan.options["num_cpus"]), workers=1)
    starting: dict = {}

    def start() -> None:
        actor = actor_class.options(**plan.options).remote(actor_spec, plan.device)
        actors.append(actor)
        starting[actor.ready.remote(str(folder), token)] = actor

    for _ in range(plan.actors):
        start()
    report = JobReport()
    pending = deque(jobs)
    idle: list = []
    replacements = plan.actors
    waiting_since = time.monotonic()
    while pending or running:
        while idle and pending:
            actor, job = idle.pop(), pending.popleft()
            if events.on_start is not None:
                events.on_start(job)
            running[actor.run.remote(job, overwrite, arguments)] = (actor, job)
        if not idle and not running and not starting:
            raise WorkerError(f"every Ray worker died; {len(pending)} video(s) not annotated (rerun to resume)")
        if not idle and not running and time.monotonic() - waiting_since > RAY_READY_TIMEOUT_S:
            raise WorkerError(f"no Ray worker started within {RAY_READY_TIMEOUT_S:.0f} s (each needs "
                              f"{plan.options}; the cluster has {ray.cluster_resources()})")
        done, _ = ray.wait([*starting, *running], num_returns=1, timeout=1.0)
        for ref in done:
            if ref in starting:
                actor = starting.pop(ref)
                try:
                    host, error = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    raise WorkerError(f"a Ray worker could not start: {_one_line(exc)}") from None
                if error:
                    raise WorkerError(error)
                if not any(folder.glob(f"{PROBE_PREFIX}{token}-{host}-*")):
                    raise WorkerError(_not_shared(folder, host, "wrote a probe file there that this machine "
                                                                "cannot see"))
                idle.append(actor)
                continue
            actor, job = running.pop(ref)
            try:
                outcome = ray.get(ref)
                idle.append(actor)
            except ray.exceptions.RayActorError:
                outcome = _died(job, "Ray worker")
                ray.kill(actor)
                if replacements:
                    replacements -= 1
                    start()
            except ray.exceptions.RayError as exc:
                outcome = JobResult(job, "failed", f"{job.video}: {_one_line(exc)}")
                idle.append(actor)
            report.add(outcome)
            if events.on_end is not None:
                events.on_end(outcome.job, outcome.line)
        if idle or running:
            waiting_since = time.monotonic()
    return report


def scale_runner(spec: WorkerSpec, jobs: list[Job], workers: str | None = None, ray: str | None = None,
                 overwrite: bool = False, arguments: dict | None = None) -> Callable[[Events], JobReport]:
    """The run of all jobs, given Events: on Ray actors (`ray` = address or auto), on local processes
    (`workers` = N or auto), or in this process when one worker is all there is to use.

    ValueError for a bad `--workers`; the models are loaded here only for the in-process run.
    """
    count = parse_workers(workers)
    if ray is not None:
        return partial(run_ray, spec, jobs, ray, count or None, overwrite, arguments)
    n = local_workers(count, spec.config.device, len(jobs))
    if n > 1:
        return partial(run_local, replace(spec, workers=n), jobs, n, overwrite, arguments)
    return partial(run_serial, build_annotator(spec, spec.config.device), jobs, overwrite, arguments)
