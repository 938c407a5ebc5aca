"""The process supervisor of `make run`: supervisord runs the Procfile's processes, this relays their
output and stops the embedded services at the end.

`flask --app api stack` prepares everything (embedded services, migrations, the admin, the
environment) and then replaces itself with `python -m supervise` (exec: same pid, so Ctrl-C and
SIGTERM reach the same process, and the Flask app it had loaded is gone). This process:

- writes `<run dir>/supervisord.conf` from the Procfile (one `[program:x]` per line, the same
  commands; `$NAME` becomes supervisord's `%(ENV_NAME)s`) and starts supervisord in the foreground
  in a session of its own;
- supervisord restarts a process that exits (`autorestart`): at once when it had been running for
  `startsecs`, otherwise after 1 s, 2 s, 3 s ... (`startretries` attempts, then FATAL), and logs
  each exit and start ("exited: heavy (terminated by SIGKILL; not expected)", "spawned: 'heavy'
  with pid 1234"); the other processes keep running and so do the embedded services;
- every program's output (stdout and stderr merged) goes to a FIFO of its own that this process
  reads, and each line is printed with the program's name in front (`light  | ...`), supervisord's
  own log lines as `supervisor | ...` (supervisord cannot prefix lines itself);
- the first SIGINT, SIGTERM or SIGHUP is passed to supervisord as SIGTERM: it stops the programs in
  reverse priority (a worker gets `stopwaitsecs` to finish its task warmly, then its process group
  is killed) and exits; this process then stops the embedded services it was told about and exits
  0. Signals that follow are ignored (they must not cut the stop of PostgreSQL in half).

`supervisorctl -c var/supervisor/supervisord.conf status|restart light|...` talks to the running
supervisord through its Unix socket.

Kept to the standard library and `embedded`: it stays small while the stack runs.
"""
from __future__ import annotations

import argparse
import errno
import os
import re
import select
import signal
import subprocess
import sys
from pathlib import Path

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Start order (supervisord starts low numbers first and stops high numbers first).
PRIORITIES = {"api": 10, "light": 20, "heavy": 20, "beat": 30, "flower": 30}
STOP_WAIT_SECONDS = 10  # a worker's warm shutdown; then its process group is killed
START_SECONDS = 5  # running this long counts as started: an exit after it is restarted at once
START_RETRIES = 60  # failed starts in a row (1 s, 2 s, ... 60 s apart: about half an hour), then FATAL
SUPERVISOR = "supervisor"


def procfile(path: Path) -> list[tuple[str, str]]:
    """(name, command) of every process line of a Procfile."""
    programs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, command = line.partition(":")
        programs.append((name.strip(), command.strip()))
    return programs


def _supervisord_command(command: str) -> str:
    """A Procfile command for supervisord: `%` doubled, `$NAME` / `${NAME}` read from the environment
    by supervisord itself (no value is written to the file)."""
    command = command.replace("%", "%%")
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", r"%(ENV_\1)s", command)


def supervisord_config(programs: list[tuple[str, str]], run_dir: Path, workdir: Path) -> str:
    lines = [
        "; Written by supervise.py at every start of `make run`; edits are lost.",
        "[supervisord]",
        "nodaemon=true",
        f"logfile={run_dir / 'supervisord.log'}",
        "logfile_maxbytes=5MB",
        "logfile_backups=1",
        f"pidfile={run_dir / 'supervisord.pid'}",
        f"childlogdir={run_dir}",
        "loglevel=info",
        *(["user=root"] if os.geteuid() == 0 else []),  # as root on purpose (containers): no warning
        "",
        "[unix_http_server]",
        f"file={run_dir / 'supervisor.sock'}",
        "chmod=0700",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{run_dir / 'supervisor.sock'}",
    ]
    for name, command in programs:
        lines += [
            "",
            f"[program:{name}]",
            f"command={_supervisord_command(command)}",
            f"directory={workdir}",
            f"priority={PRIORITIES.get(name, 50)}",
            "autostart=true",
            "autorestart=true",
            f"startsecs={START_SECONDS}",
            f"startretries={START_RETRIES}",
            "stopsignal=TERM",
            f"stopwaitsecs={STOP_WAIT_SECONDS}",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={run_dir / 'logs' / name}",
            "stdout_logfile_maxbytes=0",
            "stdout_logfile_backups=0",
        ]
    return "\n".join(lines) + "\n"


class LogRelay:
    """Reads every program's FIFO (and supervisord's own output) and prints whole lines, prefixed."""

    def __init__(self, names: list[str], log_dir: Path, out=None) -> None:
        self.out = out or sys.stdout.buffer
        self.width = max(len(name) for name in [*names, SUPERVISOR])
        self.sources: dict[int, str] = {}
        self.partial: dict[int, bytes] = {}
        self._writers: list[int] = []
        log_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            path = log_dir / name
            if path.exists() or path.is_symlink():
                path.unlink()
            os.mkfifo(path, 0o600)
            reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            # A writer of our own: the FIFO never reads as ended while supervisord reopens it for a
            # restarted program.
            self._writers.append(os.open(path, os.O_WRONLY))
            self.add(reader, name)

    def add(self, fd: int, name: str) -> None:
        os.set_blocking(fd, False)
        self.sources[fd] = name
        self.partial[fd] = b""

    def pump(self, timeout: float | None) -> None:
        try:
            ready, _, _ = select.select(list(self.sources), [], [], timeout)
        except InterruptedError:
            return
        for fd in ready:
            self._read(fd)

    def _read(self, fd: int) -> bool:
        """Reads what is there; False at the end of the stream."""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return True
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno == errno.EAGAIN:
                    return True
                raise
            if not chunk:
                self._emit(fd, final=True)
                del self.sources[fd]
                os.close(fd)
                return False
            self.partial[fd] += chunk
            self._emit(fd)

    def _emit(self, fd: int, final: bool = False) -> None:
        data = self.partial[fd]
        *lines, rest = data.split(b"\n")
        if final and rest:
            lines.append(rest)
            rest = b""
        self.partial[fd] = rest
        if lines:
            prefix = f"{self.sources[fd]:<{self.width}} | ".encode()
            self.out.write(b"".join(prefix + line + b"\n" for line in lines))
            self.out.flush()

    def drain(self) -> None:
        """Everything written so far, then the FIFOs closed."""
        for fd in list(self.sources):
            if fd in self.sources:
                self._read(fd)
                self._emit(fd, final=True)
        for fd in list(self.sources):
            os.close(fd)
        for fd in self._writers:
            os.close(fd)
        self.sources.clear()


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.supervisord: subprocess.Popen | None = None
        self.stop_requested = False
        self._passed_on = False

    def _on_signal(self, _signum: int, _frame) -> None:
        self.stop_requested = True
        if self.supervisord is not None and not self._passed_on:
            self._passed_on = True
            self.supervisord.send_signal(signal.SIGTERM)

    def run(self) -> int:
        for signum in SIGNALS:
            signal.signal(signum, self._on_signal)
        # `flask ... stack` blocked these before handing over: one that came meanwhile is delivered now.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
        try:
            return self._supervise()
        finally:
            self._stop_embedded()

    def _supervise(self) -> int:
        run_dir: Path = self.args.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        programs = procfile(self.args.procfile)
        config = run_dir / "supervisord.conf"
        config.write_text(supervisord_config(programs, run_dir, self.args.workdir), encoding="utf-8")
        relay = LogRelay([name for name, _ in programs], run_dir / "logs")
        read_end, write_end = os.pipe()
        supervisord = os.path.join(os.path.dirname(sys.executable), "supervisord")
        self.supervisord = subprocess.Popen([supervisord, "-c", str(config)], cwd=self.args.workdir,
                                            stdout=write_end, stderr=write_end, start_new_session=True)
        os.close(write_end)
        relay.add(read_end, SUPERVISOR)
        if self.stop_requested:  # a signal that came while supervisord was being started
            self._passed_on = True
            self.supervisord.send_signal(signal.SIGTERM)
        while self.supervisord.poll() is None:
            relay.pump(0.5)
        relay.drain()
        code = self.supervisord.returncode
        return 0 if self.stop_requested else (code or 1)

    def _stop_embedded(self) -> None:
        services = [name for name in self.args.stop_embedded.split(",") if name]
        if not services:
            return
        print("leadline: stopping embedded " + ", ".join(services), flush=True)
        import embedded

        if "redis" in services:
            embedded.stop_redis()
        if "postgres" in services:
            embedded.stop_postgres()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m supervise", description=__doc__.split("\n\n")[0])
    parser.add_argument("--procfile", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--run-dir", type=Path, required=True, help="supervisord's config, socket, pid and log")
    parser.add_argument("--stop-embedded", default="", help="embedded services to stop at the end: postgres,redis")
    args = parser.parse_args(argv)
    sys.exit(Runner(args).run())


def command(procfile_path: Path, workdir: Path, run_dir: Path, stop_embedded: list[str]) -> list[str]:
    """The command line `flask ... stack` hands over to."""
    return [sys.executable, "-m", "supervise", "--procfile", str(procfile_path), "--workdir", str(workdir),
            "--run-dir", str(run_dir), "--stop-embedded", ",".join(stop_embedded)]


if __name__ == "__main__":
    main()
