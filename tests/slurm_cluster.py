"""A one-node SLURM cluster on this machine, for tests: Debian's slurmctld/slurmd/munge (installed with
apt-get when missing), a slurm.conf generated into /etc/slurm (where the executor plugin's job steps look;
see shared/notes/slurm-single-node.md), state and logs in a temporary folder, every daemon stopped by its
PID afterwards, also when the test fails."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from debian import apt_install

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
SLURM_CONF = Path("/etc/slurm/slurm.conf")
GRES_CONF = SLURM_CONF.with_name("gres.conf")
# the node's declared GPUs: a GRES of this name on a device file every machine has (no real GPU behind it; slurmd
# only checks the file exists), so that jobs asking for `--gpus` are scheduled and see their allocation
FAKE_GPU_DEVICE = "/dev/null"


class SlurmUnavailable(RuntimeError):
    """SLURM cannot be installed or started here; the message is the one-line reason."""


def _run(*command, timeout=60, check=True) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=check)


def ensure_installed() -> None:
    if all(shutil.which(tool) for tool in ("slurmctld", "slurmd", "sbatch", "munged")):
        return
    reason = apt_install(PACKAGES, "SLURM", timeout=600)
    if reason:
        raise SlurmUnavailable(reason)


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _stop(pid: int | None, seconds: float = 10) -> None:
    if pid is None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):  # slurmd may ignore SIGTERM once slurmctld is gone
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


class SingleNodeSlurm:
    """`with SingleNodeSlurm(folder, gpus=1) as cluster:` a running one-node cluster with partition `debug`, its
    node declaring `gpus` GPUs (GRES `gpu`, FAKE_GPU_DEVICE)."""

    partition = "debug"

    def __init__(self, folder: Path, gpus: int = 0):
        self.folder, self.gpus = Path(folder), gpus
        self.pid_files: list[Path] = []
        self.previous: dict[Path, bytes | None] = {}

    def __enter__(self) -> "SingleNodeSlurm":
        ensure_installed()
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        for name in ("state", "spool", "log"):
            (self.folder / name).mkdir(parents=True, exist_ok=True)
        self._start_munge()
        node = _run("slurmd", "-C").stdout.splitlines()[0]
        host = socket.gethostname().split(".")[0]
        conf = "\n".join([
            "ClusterName=clusterlab-test", f"SlurmctldHost={host}", "SlurmUser=root", "AuthType=auth/munge",
            f"StateSaveLocation={self.folder / 'state'}", f"SlurmdSpoolDir={self.folder / 'spool'}",
            f"SlurmctldPidFile={self.folder / 'slurmctld.pid'}", f"SlurmdPidFile={self.folder / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.folder / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={self.folder / 'log' / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "AccountingStorageType=accounting_storage/none", "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none", "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory",
            "MinJobAge=3600", "ReturnToService=2", "SchedulerType=sched/builtin",
            *(["GresTypes=gpu"] if self.gpus else []),
            node + (f" Gres=gpu:{self.gpus}" if self.gpus else ""),
            f"PartitionName={self.partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4",
        ]) + "\n"
        self._write(SLURM_CONF, conf)
        self._write(GRES_CONF, "".join(f"Name=gpu File={FAKE_GPU_DEVICE}\n" for _ in range(self.gpus)) or None)
        _run("slurmctld", "-i")
        self.pid_files.append(self.folder / "slurmctld.pid")
        _run("slurmd")
        self.pid_files.append(self.folder / "slurmd.pid")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = _run("timeout", "5", "sinfo", "-h", "-o", "%t", check=False).stdout.strip()
            if state in ("idle", "mix", "alloc"):
                return
            time.sleep(0.5)
        log = (self.folder / "log" / "slurmctld.log").read_text(errors="replace").strip().splitlines()[-1:]
        raise SlurmUnavailable(f"the SLURM node did not come up ({' '.join(log) or 'no log'})")

    def _start_munge(self) -> None:
        run_dir = Path("/run/munge")
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(run_dir, "munge", "munge")
        if not Path("/etc/munge/munge.key").exists():
            _run("runuser", "-u", "munge", "--", "/usr/sbin/mungekey", "--create")
        pid_file = run_dir / "munged.pid"
        if _pid(pid_file) is not None and Path(f"/proc/{_pid(pid_file)}").exists():
            return  # already running (not ours to stop)
        _run("runuser", "-u", "munge", "--", "/usr/sbin/munged")
        self.pid_files.append(pid_file)

    def __exit__(self, *exc) -> None:
        for pid_file in reversed(self.pid_files):
            _stop(_pid(pid_file))
        self.pid_files.clear()
        for path, previous in self.previous.items():
            if previous is not None:
                path.write_bytes(previous)
            else:
                path.unlink(missing_ok=True)
        self.previous.clear()

    def _write(self, path: Path, text: str | None) -> None:
        """Write (None: remove) one of SLURM's config files, keeping what was there for __exit__."""
        self.previous.setdefault(path, path.read_bytes() if path.exists() else None)
        path.parent.mkdir(parents=True, exist_ok=True)
        if text is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(text)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
