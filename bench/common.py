"""What the benchmarks share: processes in their own group, CPU and memory sampling, the CLI.

The benchmark scripts run as ``python bench/NAME.py``; their folder is on ``sys.path``, so they
``from common import ...``.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_INTERVAL = 0.05  # seconds between two RSS samples
SERVERS: list[Server] = []  # processes started by a benchmark, stopped in its main()'s finally
STOPPABLE: list[Any] = []  # tests/services.py handles (PostgreSQL, clamd, SeaweedFS…), stopped after them


class Server:
    """A process in its own process group (stopped with everything it started)."""

    def __init__(self, name: str, args: list[str], *, env: dict[str, str], log: Path, cwd: Path = ROOT) -> None:
        self.name, self.log = name, log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        SERVERS.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.popen.poll() is None:
            _signal_group(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                _signal_group(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        _signal_group(self.popen.pid, signal.SIGKILL)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def service_pgid(service: Any) -> int | None:
    """The process group of a tests/services.py server (it runs in its own session)."""
    popen = getattr(getattr(service, "_process", None), "_popen", None)
    return popen.pid if popen is not None else None


def proc_stats() -> dict[int, tuple[int, int, int]]:
    """Every live process: pid -> (ppid, process group, CPU ticks: utime stime cutime cstime)."""
    procs: dict[int, tuple[int, int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        procs[int(entry.name)] = (int(fields[1]), int(fields[2]), sum(int(x) for x in fields[11:15]))
    return procs


def group_cpu_seconds(pgid: int | None) -> float:
    """CPU time (user + system, with reaped children) of the live processes of a process group."""
    if pgid is None:
        return 0.0
    ticks = sum(t for _, group, t in proc_stats().values() if group == pgid)
    return ticks / os.sysconf("SC_CLK_TCK")


class Cpu:
    """CPU seconds spent by each party during an operation."""

    def __init__(self, groups: dict[str, int | None]) -> None:
        self.groups = groups

    def now(self) -> dict[str, float]:
        out = {name: group_cpu_seconds(pgid) for name, pgid in self.groups.items()}
        out["client"] = time.process_time()
        return out

    @staticmethod
    def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {name: after[name] - before[name] for name in before}


def tree_rss(pid: int) -> int:
    """VmRSS (bytes) of a process and all its descendants."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    stack.extend(int(c) for c in children.read().split())
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total


class RssSampler(threading.Thread):
    """Samples tree_rss(pid) every SAMPLE_INTERVAL; ``window()`` gives the peak since ``start_window()``."""

    def __init__(self, pid: int) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid = pid
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.peak = 0
        self.samples: list[int] = []
        self.last = tree_rss(pid)

    def run(self) -> None:
        while not self.stopping.is_set():
            value = tree_rss(self.pid)
            with self.lock:
                self.last = value
                self.peak = max(self.peak, value)
                self.samples.append(value)
            self.stopping.wait(SAMPLE_INTERVAL)

    def start_window(self) -> None:
        with self.lock:
            self.peak = self.last = tree_rss(self.pid)
            self.samples = [self.last]

    def window(self) -> tuple[int, int]:
        """(peak, number of samples) since start_window(), including a final sample now."""
        value = tree_rss(self.pid)
        with self.lock:
            self.peak = max(self.peak, value)
            self.samples.append(value)
            return self.peak, len(self.samples)

    def idle(self, seconds: float) -> int:
        """The median RSS over ``seconds`` of quiet."""
        self.start_window()
        time.sleep(seconds)
        self.window()
        with self.lock:
            return int(statistics.median(self.samples))


def stop_everything() -> None:
    """Every server a benchmark started, then every service, newest first; one that does not stop
    does not keep the others running."""
    for server in reversed(SERVERS):
        server.stop()
    for service in reversed(STOPPABLE):
        try:
            service.stop()
        except Exception as exc:
            print(f"could not stop {type(service).__name__}: {exc}", file=sys.stderr)


def vault_env(*, database_url: str, issuer: str, data_dir: Path, s3: Any, bucket: str, antivirus: str,
              **settings: str) -> dict[str, str]:
    """The environment of a `vault` process on PostgreSQL and SeaweedFS: this process's environment
    without its VAULT_ variables, then these (``settings``: more VAULT_ variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
    env.update(
        VAULT_DATABASE_URL=database_url, VAULT_ISSUER=issuer, VAULT_DATA_DIR=str(data_dir),
        VAULT_STORAGE_BACKEND="s3", VAULT_S3_ENDPOINT_URL=s3.endpoint_url, VAULT_S3_BUCKET=bucket,
        VAULT_S3_REGION=s3.region, VAULT_S3_ACCESS_KEY_ID=s3.access_key, VAULT_S3_SECRET_ACCESS_KEY=s3.secret_key,
        VAULT_ANTIVIRUS=antivirus, **settings,
    )
    return env


def run_cli(args: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", "vault.cli", *args], cwd=ROOT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"vault {' '.join(args[:2])} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def tool_version(args: list[str]) -> str:
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return out.splitlines()[0] if out else "?"
