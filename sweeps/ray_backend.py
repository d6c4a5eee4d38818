"""The Ray backend: the same runs as Ray tasks on a cluster that shares --logdir, one task per
pack of runs (sweeps.pack). Each task asks for the CPUs and (fractional) GPUs of one process, runs
train.py as a child process and is retried on node loss; a retry resumes each run from its last
checkpoint. Ray is imported only here, and only when used."""

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
from sweeps.backend import Observer, Outcome, StopRequest, record_end, record_start
from sweeps.pack import Pack
from sweeps.process import spawn
from sweeps.state import Ledger, launch_line, newest_step

INSTALL = 'pip install -e ".[ray]"'
ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.5


@dataclass(frozen=True)
class RayOptions:
    """Where the runs go and what each process asks for."""

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
    paths = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), pythonpath()]))}
    # --track's settings (WANDB_MODE, WANDB_API_KEY, WANDB_DIR) reach runs on other machines too
    tracking = {k: v for k, v in os.environ.items() if k.startswith("WANDB_")}
    env = {"env_vars": {**tracking, **paths}}
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


def execute(argv: list[str], run_dirs: list[str], log: str) -> dict:
    """The task body: run train.py (the runs in `run_dirs`) to its end on whichever node the task
    landed on. Each cancel (KeyboardInterrupt) is forwarded as SIGTERM: the first makes the runs
    checkpoint and stop, a second stops them at once (train.py's own handling of a second
    signal). A retried task's train.py waits for the lock of each run directory
    (agents.rundir.hold) while an earlier attempt still writes its final checkpoints."""
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        steps = [newest_step(Path(run_dir)) for run_dir in run_dirs]
        names = [Path(run_dir).name for run_dir in run_dirs]
        line = f"# sweep: ray task on {socket.gethostname()}: {launch_line(names, steps)}\n"
        out.write(line.encode())
        out.flush()
        child = spawn(argv, out)
        code = None
        while code is None:
            try:
                code = child.wait()
            except KeyboardInterrupt:
                child.send_signal(signal.SIGTERM)
    return {"rc": code, "steps": steps, "host": socket.gethostname()}


def submit(ray: Any, packs: list[Pack], options: RayOptions) -> dict[Any, tuple[Pack, float]]:
    """One task per pack, each asking for one process's resources whatever its number of runs."""
    task = ray.remote(execute).options(
        num_cpus=options.cpus_per_run,
        num_gpus=options.gpus_per_run,
        max_retries=options.max_retries,
    )
    submitted = {}
    for pack in packs:
        run_dirs = [str(job.run_dir) for job in pack.jobs]
        submitted[task.remote(list(pack.argv), run_dirs, str(pack.log))] = (pack, time.monotonic())
    return submitted


def outcome_of(ray: Any, ref: Any, pack: Pack, began: float) -> Outcome:
    """The task's result; a task lost for good (retries spent) or cancelled is an outcome too."""
    seconds = time.monotonic() - began
    try:
        result = ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        return Outcome(pack.name, 128 + int(signal.SIGTERM), seconds)
    except ray.exceptions.RayError as error:
        text = str(error).strip().splitlines()
        return Outcome(pack.name, -1, seconds, error=text[-1] if text else type(error).__name__)
    return Outcome(pack.name, int(result["rc"]), seconds)


def started(pack: Pack, submitted: float) -> bool:
    """Whether the task began (it appends to the pack's log; queued tasks have not)."""
    try:
        return pack.log.stat().st_mtime >= submitted
    except FileNotFoundError:
        return False


def run_ray(
    packs: list[Pack],
    *,
    options: RayOptions,
    ledger: Ledger,
    observer: Observer,
    stop: StopRequest,
) -> list[Outcome]:
    """Run `packs` as Ray tasks on the connected cluster; see run_local for the contract."""
    ray = require_ray()
    wall = time.time()
    pending = submit(ray, packs, options)
    seen: dict[str, float] = {}
    outcomes, forwarded = [], 0
    while pending:
        if stop.count > forwarded:  # each Ctrl-C reaches the runs, as on the local pool
            for ref in pending:
                ray.cancel(ref)
            forwarded = stop.count
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
        for pack, _ in pending.values():
            if pack.name not in seen and started(pack, wall):
                seen[pack.name] = time.monotonic()
                steps = pack.steps()
                record_start(ledger, pack, steps, backend="ray")
                observer.started(pack, steps)
        for ref in ready:
            pack, submitted = pending.pop(ref)
            outcome = outcome_of(ray, ref, pack, seen.get(pack.name, submitted))
            record_end(ledger, pack, outcome, backend="ray")
            outcomes.append(outcome)
            observer.ended(pack, outcome)
        observer.tick()
    return outcomes
