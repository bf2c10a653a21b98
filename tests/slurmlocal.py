"""A one-node Slurm cluster on this machine only, for the integration test: munged, slurmctld and slurmd from the
Debian packages (`slurmctld slurmd slurm-client munge`), configured under a temporary folder, listening on
127.0.0.1, and stopped by the process ids this module started.

    with LocalSlurm(tmp_path / "slurm") as cluster:   # sets SLURM_CONF for this process and its children
        subprocess.run(["sbatch", ...])
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PROGRAMS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "srun", "scancel")


def missing_programs() -> list[str]:
    """Programs of the Debian packages that are not on this machine (PATH plus /usr/sbin)."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin" + os.pathsep + "/sbin"
    return [p for p in PROGRAMS if shutil.which(p, path=path) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _which(name: str) -> str:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


class LocalSlurm:
    """Start munged, slurmctld and slurmd for this host; `stop()` ends exactly those processes."""

    def __init__(self, root: Path, cpus: int | None = None):
        self.root = Path(root)
        self.host = socket.gethostname().split(".")[0]
        self.cpus = cpus or os.cpu_count() or 1
        self.procs: dict[str, int] = {}
        self.conf = self.root / "slurm.conf"
        self._old_env = None

    # ---------------------------------------------------------------------------------------------- start, stop

    def __enter__(self) -> "LocalSlurm":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        for d in ("munge", "state", "spool", "log"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "munge", 0o700)
        key, sock = self.root / "munge" / "munge.key", self.root / "munge" / "munge.socket"
        subprocess.run([_which("mungekey"), "--create", "--keyfile", str(key), "--force"], check=True,
                       capture_output=True)
        self._daemon("munged", [_which("munged"), "--foreground", "--force", f"--key-file={key}",
                                f"--socket={sock}", f"--pid-file={self.root / 'munge' / 'munged.pid'}",
                                f"--log-file={self.root / 'log' / 'munged.log'}",
                                f"--seed-file={self.root / 'munge' / 'munged.seed'}"])
        self._wait(lambda: sock.exists(), "munged socket", self.root / "log" / "munged.log")
        self.conf.write_text(self._config(sock))
        self._old_env = os.environ.get("SLURM_CONF")
        os.environ["SLURM_CONF"] = str(self.conf)
        self._daemon("slurmctld", [_which("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._daemon("slurmd", [_which("slurmd"), "-D", "-f", str(self.conf), "-N", self.host])
        self._wait(self._node_idle, "node idle", self.root / "log" / "slurmd.log", timeout=60)

    def stop(self) -> None:
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.procs.pop(name, None)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(100):
                try:
                    done, _status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if done:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        if self._old_env is not None:
            os.environ["SLURM_CONF"] = self._old_env
        elif "SLURM_CONF" in os.environ and os.environ["SLURM_CONF"] == str(self.conf):
            del os.environ["SLURM_CONF"]

    def log(self, name: str) -> str:
        path = self.root / "log" / f"{name}.log"
        return path.read_text(errors="replace") if path.is_file() else ""

    # ------------------------------------------------------------------------------------------------ helpers

    def _daemon(self, name: str, argv: list[str]) -> None:
        out = open(self.root / "log" / f"{name}.out", "ab")
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        out.close()
        self.procs[name] = proc.pid

    def _wait(self, ready, what: str, log: Path, timeout: float = 30) -> None:
        t0 = time.time()
        while time.time() - t0 < timeout:
            if ready():
                return
            for name, pid in self.procs.items():
                try:
                    done, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done, status = pid, 0
                if done:
                    out = (self.root / "log" / f"{name}.out").read_text(errors="replace")
                    raise RuntimeError(f"{name} exited ({status}) while waiting for {what}: {out[-2000:]}")
            time.sleep(0.3)
        text = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
        raise RuntimeError(f"local Slurm: no {what} after {timeout:.0f} s; {log}: {text}")

    def _node_idle(self) -> bool:
        r = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, timeout=10)
        return r.returncode == 0 and r.stdout.strip().startswith("idle")

    def _config(self, munge_socket: Path) -> str:
        r, log = self.root, self.root / "log"
        # cred_expire is also how long a requeued job waits before it may start again (default 120 s)
        return f"""# one-node Slurm for tests: this host only, on 127.0.0.1
ClusterName=mertooltest
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket},cred_expire=10
CredType=cred/munge
StateSaveLocation={r / 'state'}
SlurmdSpoolDir={r / 'spool'}
SlurmctldPidFile={r / 'slurmctld.pid'}
SlurmdPidFile={r / 'slurmd.pid'}
SlurmctldLogFile={log / 'slurmctld.log'}
SlurmdLogFile={log / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={log / 'jobcomp.txt'}
MinJobAge=600
KillWait=5
InactiveLimit=0
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} State=UNKNOWN
PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
"""
