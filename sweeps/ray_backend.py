"""The Ray backend: the same runs as Ray tasks on a cluster that shares --logdir. Each task asks
for CPUs and (fractional) GPUs, runs train.py as a child process and is retried on node loss; a
retry resumes from the run's last checkpoint. Ray is imported only here, and only when used."""

from __future__ import annotations

import os
import signal
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from configs.errors import UserError
from sweeps.backend import Observer, Outcome, StopRequest
from sweeps.plan import Job
from sweeps.process import spawn
from sweeps.state import Ledger, newest_step

INSTALL = 'pip install -e ".[ray]"'
ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.5


@dataclass(frozen=True)
class RayOptions:
    """Where the runs go and what each asks for."""

    address: str | None = None
    """A cluster address, `auto`, or `local` (a new local cluster); None: the one `ray start`
    made on this machine, else a new local one."""
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    max_retries: int = 3
    """Reruns of a task whose worker or node died (each resumes from the run's checkpoint)."""


def require_ray() -> Any:
    """The ray module, or a UserError naming the extra."""
    try:
        import ray
    except ImportError:
        raise UserError(
            f"--backend ray needs the optional [ray] extra (ray is not installed): {INSTALL}"
        ) from None
    return ray


def existing_cluster(ray: Any, address: str | None) -> str | None:
    """The address to connect to, or None when a new local cluster should start."""
    if address == "local":
        return None
    if address not in (None, "auto"):
        return address
    try:
        from ray._private.services import canonicalize_bootstrap_address

        return canonicalize_bootstrap_address(address)
    except ConnectionError as error:
        raise UserError(f"No Ray cluster to connect to for --address {address}: {error}") from None


def connect(options: RayOptions, *, num_cpus: int | None = None) -> dict:
    """ray.init against an existing cluster, or a local one (no dashboard, no auth, a short temp
    dir: Ray's unix socket paths are length-limited). Returns {'seconds', 'local', 'temp_dir'}."""
    ray = require_ray()
    address = existing_cluster(ray, options.address)
    began = time.perf_counter()
    env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), pythonpath()]))}}
    if address is not None:
        try:
            ray.init(address=address, runtime_env=env, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise UserError(f"Cannot connect to the Ray cluster at {address}: {error}") from None
        return {"seconds": time.perf_counter() - began, "local": False, "temp_dir": None}
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        runtime_env=env,
        log_to_driver=False,
        _temp_dir=temp_dir,
    )
    return {"seconds": time.perf_counter() - began, "local": True, "temp_dir": temp_dir}


def pythonpath() -> str:
    return os.environ.get("PYTHONPATH", "")


def execute(argv: list[str], run_dir: str, log: str) -> dict:
    """The task body: run train.py to its end on whichever node the task landed on. Each cancel
    (KeyboardInterrupt) is forwarded as SIGTERM: the first makes the run checkpoint and stop, a
    second stops it at once (train.py's own handling of a second signal). A retried task's
    train.py waits for the lock of the run directory (agents.rundir.hold) while an earlier
    attempt still writes its final checkpoint."""
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        step = newest_step(Path(run_dir))
        out.write(f"# sweep: ray task on {socket.gethostname()} at step {step}\n".encode())
        out.flush()
        child = spawn(argv, out)
        code = None
        while code is None:
            try:
                code = child.wait()
            except KeyboardInterrupt:
                child.send_signal(signal.SIGTERM)
    return {"rc": code, "step": step, "host": socket.gethostname()}


def submit(ray: Any, jobs: list[Job], options: RayOptions) -> dict[Any, tuple[Job, float]]:
    task = ray.remote(execute).options(
        num_cpus=options.cpus_per_run,
        num_gpus=options.gpus_per_run,
        max_retries=options.max_retries,
    )
    return {
        task.remote(list(j.argv), str(j.run_dir), str(j.log)): (j, time.monotonic()) for j in jobs
    }


def outcome_of(ray: Any, ref: Any, job: Job, began: float) -> Outcome:
    """The task's result; a task lost for good (retries spent) or cancelled is an outcome too."""
    seconds = time.monotonic() - began
    try:
        result = ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        return Outcome(job.name, 128 + int(signal.SIGTERM), seconds)
    except ray.exceptions.RayError as error:
        text = str(error).strip().splitlines()
        return Outcome(job.name, -1, seconds, error=text[-1] if text else type(error).__name__)
    return Outcome(job.name, int(result["rc"]), seconds)


def started(job: Job, submitted: float) -> bool:
    """Whether the task began (it appends to the run's log; queued tasks have not)."""
    try:
        return job.log.stat().st_mtime >= submitted
    except FileNotFoundError:
        return False


def run_ray(
    jobs: list[Job],
    *,
    options: RayOptions,
    ledger: Ledger,
    observer: Observer,
    stop: StopRequest,
) -> list[Outcome]:
    """Run `jobs` as Ray tasks on the connected cluster; see run_local for the contract."""
    ray = require_ray()
    wall = time.time()
    pending = submit(ray, jobs, options)
    seen: dict[str, float] = {}
    outcomes, forwarded = [], 0
    while pending:
        if stop.count > forwarded:  # each Ctrl-C reaches the runs, as on the local pool
            for ref in pending:
                ray.cancel(ref)
            forwarded = stop.count
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
        for job, _ in pending.values():
            if job.name not in seen and started(job, wall):
                seen[job.name] = time.monotonic()
                ledger.write("start", job.name, step=newest_step(job.run_dir), backend="ray")
                observer.started(job, newest_step(job.run_dir))
        for ref in ready:
            job, submitted = pending.pop(ref)
            outcome = outcome_of(ray, ref, job, seen.get(job.name, submitted))
            ledger.write("end", job.name, rc=outcome.returncode, backend="ray")
            outcomes.append(outcome)
            observer.ended(job, outcome)
        observer.tick()
    return outcomes
