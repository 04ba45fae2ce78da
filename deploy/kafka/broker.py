#!/usr/bin/env python3
"""Run a real single-node Apache Kafka 4.x broker (KRaft, combined mode) without Docker.

The broker jars come from Maven Central through ``mvn`` (``deploy/kafka/pom.xml``) into a
git-ignored cache, ``.cache/kafka/<version>/libs``; the broker runs as a plain background
``java`` process listening on 127.0.0.1 only.

CLI (stdlib only, any python3 >= 3.9)::

    python deploy/kafka/broker.py fetch               # jars into the cache (no-op when present)
    python deploy/kafka/broker.py start [--port P]    # format + start, wait until it answers;
                                                      # prints the bootstrap address on stdout
    python deploy/kafka/broker.py wait  [--port P | --bootstrap H:P] [--timeout S]
    python deploy/kafka/broker.py status [--port P]   # JSON
    python deploy/kafka/broker.py stop  [--port P] [--save-log FILE]

Library (e.g. from a pytest session fixture)::

    broker = start_broker(19092)      # -> Broker, already answering
    broker.bootstrap                  # "127.0.0.1:19092"
    broker.stop()

    with running_broker(19092) as broker:
        ...

Environment: KASSASYNC_KAFKA_PORT (default 19092; the controller listens on port + 1),
KASSASYNC_KAFKA_CACHE (default <repo>/.cache/kafka), KASSASYNC_KAFKA_HEAP (default 512m),
KASSASYNC_KAFKA_JVM_OPTS (extra JVM options), KASSASYNC_KAFKA_MVN (default ``mvn``).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import errno
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
POM = HERE / "pom.xml"
SERVER_TEMPLATE = HERE / "server.properties"
LOG4J_CONFIG = HERE / "log4j2.properties"

HOST = "127.0.0.1"  # never bind anything else: tests and dev only
DEFAULT_PORT = 19092
DEFAULT_HEAP = "512m"
DEFAULT_START_TIMEOUT = 90.0
DEFAULT_STOP_TIMEOUT = 30.0
NODE_ID = 1
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
COMPLETE_STAMP = ".complete"


class BrokerError(RuntimeError):
    """The broker could not be fetched, started, reached or stopped."""


class BrokerAlreadyRunning(BrokerError):
    """A broker started by this tool already runs on the requested port."""


class PortInUse(BrokerError):
    """Something else already listens on the broker or controller port."""


# --------------------------------------------------------------------------- configuration


def kafka_version(pom: Path = POM) -> str:
    """The pinned Kafka version: the ``kafka.version`` property of deploy/kafka/pom.xml."""
    match = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", pom.read_text())
    if not match:
        raise BrokerError(f"no <kafka.version> property in {pom}")
    return match.group(1)


def cache_root() -> Path:
    env = os.environ.get("KASSASYNC_KAFKA_CACHE")
    return Path(env).resolve() if env else REPO_ROOT / ".cache" / "kafka"


def libs_dir(version: str | None = None) -> Path:
    return cache_root() / (version or kafka_version()) / "libs"


def run_root() -> Path:
    return cache_root() / "run"


def run_dir_for(port: int) -> Path:
    return run_root() / str(port)


def default_port() -> int:
    env = os.environ.get("KASSASYNC_KAFKA_PORT")
    return _check_port(int(env)) if env else DEFAULT_PORT


def _check_port(port: int) -> int:
    if not 1024 <= port <= 65534:
        raise BrokerError(f"port {port} out of range 1024..65534 (the controller uses port + 1)")
    return port


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise BrokerError("java not found (Kafka 4.x needs Java 17+): install it or set JAVA_HOME")
    return found


def _mvn() -> list[str]:
    cmd = shlex.split(os.environ.get("KASSASYNC_KAFKA_MVN", "mvn"))
    if not shutil.which(cmd[0]):
        raise BrokerError(f"{cmd[0]} not found: Maven 3.6+ is needed to fetch the Kafka jars")
    return cmd


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (released when the process dies, so never stale)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _log(message: str) -> None:
    print(f"[kafka-broker] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- fetch


def _jars_complete(libs: Path) -> bool:
    stamp = libs / COMPLETE_STAMP
    if not stamp.is_file():
        return False
    try:
        jars = json.loads(stamp.read_text())["jars"]
    except (ValueError, KeyError):
        return False
    return bool(jars) and all((libs / jar).is_file() for jar in jars)


def ensure_jars(version: str | None = None, *, force: bool = False) -> Path:
    """Fetch the broker jars into ``.cache/kafka/<version>/libs`` unless already there.

    Safe to call concurrently (a file lock serialises fetches) and after an interrupted fetch
    (jars are copied to a temporary folder that is renamed into place only when complete).
    Returns the libs folder.
    """
    version = version or kafka_version()
    if version != kafka_version():
        raise BrokerError(f"pom.xml pins Kafka {kafka_version()}, not {version}")
    libs = libs_dir(version)
    if not force and _jars_complete(libs):
        return libs
    with _file_lock(libs.parent / ".fetch.lock"):
        if not force and _jars_complete(libs):  # fetched by someone else meanwhile
            return libs
        started = time.monotonic()
        _log(f"fetching Apache Kafka {version} jars from Maven Central into {libs} ...")
        partial = Path(tempfile.mkdtemp(prefix="libs.partial-", dir=libs.parent))
        try:
            cmd = [
                *_mvn(),
                "-B",
                "-q",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={partial}",
            ]
            result = subprocess.run(cmd, cwd=HERE, capture_output=True, text=True)
            if result.returncode != 0:
                output = (result.stdout + result.stderr).strip()
                raise BrokerError(f"mvn failed ({result.returncode}): {' '.join(cmd)}\n{output}")
            jars = sorted(p.name for p in partial.glob("*.jar"))
            if not any(j.startswith(f"kafka_2.13-{version}") for j in jars):
                raise BrokerError(f"mvn copied no kafka_2.13-{version} jar into {partial}")
            stamp = {"version": version, "fetched_at": time.time(), "jars": jars}
            (partial / COMPLETE_STAMP).write_text(json.dumps(stamp, indent=1) + "\n")
            if libs.exists():
                shutil.rmtree(libs)
            partial.rename(libs)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        _log(f"fetched {len(jars)} jars in {time.monotonic() - started:.1f}s")
    return libs


# --------------------------------------------------------------------------- wire protocol

API_METADATA = 3
API_API_VERSIONS = 18
CLIENT_ID = b"kassasync-broker-py"


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        chunks += chunk
    return bytes(chunks)


def _roundtrip(
    sock: socket.socket, api_key: int, api_version: int, correlation_id: int, body: bytes
) -> bytes:
    """Send one request (header v1, non-flexible) and return the response body."""
    header = struct.pack(">hhih", api_key, api_version, correlation_id, len(CLIENT_ID))
    message = header + CLIENT_ID + body
    sock.sendall(struct.pack(">i", len(message)) + message)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    response = _recv_exact(sock, size)
    (got,) = struct.unpack_from(">i", response, 0)
    if got != correlation_id:
        raise ConnectionError(f"correlation id {got} != {correlation_id}")
    return response[4:]


def _read_string(buf: bytes, offset: int) -> tuple[str | None, int]:
    (length,) = struct.unpack_from(">h", buf, offset)
    offset += 2
    if length < 0:
        return None, offset
    return buf[offset : offset + length].decode(), offset + length


@dataclass
class ProbeResult:
    """What a broker answered to ApiVersions v0 + Metadata v4."""

    api_versions: dict[int, tuple[int, int]]
    brokers: list[tuple[int, str, int]]
    cluster_id: str | None
    controller_id: int


def probe(host: str, port: int, timeout: float = 2.0) -> ProbeResult:
    """Ask the broker ApiVersions (v0) then Metadata (v4, no topics) over a raw socket.

    Raises OSError/ConnectionError when it does not answer, BrokerError when it answers
    but is not ready (error code, or no registered/unfenced broker yet).
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        body = _roundtrip(sock, API_API_VERSIONS, 0, 1, b"")
        (error_code, count) = struct.unpack_from(">hi", body, 0)
        if error_code != 0:
            raise BrokerError(f"ApiVersions error code {error_code}")
        versions = {}
        for i in range(count):
            key, lo, hi = struct.unpack_from(">hhh", body, 6 + 6 * i)
            versions[key] = (lo, hi)
        lo, hi = versions.get(API_METADATA, (0, -1))
        if not lo <= 4 <= hi:
            raise BrokerError(f"broker does not support Metadata v4 (supports {lo}..{hi})")
        # Metadata v4: topics = [] (none), allow_auto_topic_creation = false.
        body = _roundtrip(sock, API_METADATA, 4, 2, struct.pack(">ib", 0, 0))
        offset = 4  # throttle_time_ms
        (n_brokers,) = struct.unpack_from(">i", body, offset)
        offset += 4
        brokers = []
        for _ in range(n_brokers):
            (node_id,) = struct.unpack_from(">i", body, offset)
            broker_host, offset = _read_string(body, offset + 4)
            (broker_port,) = struct.unpack_from(">i", body, offset)
            _rack, offset = _read_string(body, offset + 4)
            brokers.append((node_id, broker_host or "", broker_port))
        cluster_id, offset = _read_string(body, offset)
        (controller_id,) = struct.unpack_from(">i", body, offset)
    if not brokers:
        raise BrokerError("broker answers but no broker is registered (unfenced) yet")
    return ProbeResult(versions, brokers, cluster_id, controller_id)


def parse_bootstrap(bootstrap: str) -> tuple[str, int]:
    host, _, port = bootstrap.strip().rpartition(":")
    if not host or not port.isdigit():
        raise BrokerError(f"bad bootstrap address {bootstrap!r}, expected HOST:PORT")
    return host, int(port)


def wait_until_ready(
    host: str,
    port: int,
    timeout: float = DEFAULT_START_TIMEOUT,
    *,
    alive: Any = None,
    log_path: Path | None = None,
) -> float:
    """Block until the broker at host:port answers ApiVersions + Metadata; return seconds waited.

    ``alive`` is an optional callable returning False once the broker process has died, so
    a crashed start fails at once instead of after the timeout.
    """
    started = time.monotonic()
    deadline = started + timeout
    last_error: BaseException | None = None
    while True:
        if alive is not None and not alive():
            raise BrokerError(f"Kafka broker process exited during start-up\n{_log_tail(log_path)}")
        try:
            probe(host, port, timeout=min(2.0, max(0.2, deadline - time.monotonic())))
            return time.monotonic() - started
        except (OSError, BrokerError, struct.error) as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            raise BrokerError(
                f"Kafka broker at {host}:{port} did not answer within {timeout:.0f}s "
                f"(last error: {last_error!r})\n{_log_tail(log_path)}"
            )
        time.sleep(0.1)


def _log_tail(log_path: Path | None, lines: int = 40) -> str:
    if log_path is None:
        return ""
    parts = []
    for path in (log_path.parent / "stdout.log", log_path):
        if path.is_file():
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            if tail:
                parts.append(f"--- last lines of {path} ---\n" + "\n".join(tail))
    return "\n".join(parts)


# --------------------------------------------------------------------------- processes


def _process_args(pid: int) -> list[str] | None:
    """The argv of a live (non-zombie) process, or None if there is none."""
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            stat = (proc / "stat").read_text()
            if stat.rpartition(")")[2].split()[0] in ("Z", "X"):
                return None
            raw = (proc / "cmdline").read_bytes()
        except OSError:
            return None
        return [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]
    if Path("/proc/self").is_dir():  # Linux and no such pid
        return None
    result = subprocess.run(  # macOS and friends: best effort (paths with spaces split)
        ["ps", "-ww", "-p", str(pid), "-o", "stat=", "-o", "command="],
        capture_output=True,
        text=True,
    )
    fields = result.stdout.split()
    if result.returncode != 0 or not fields or fields[0].startswith("Z"):
        return None
    return fields[1:]


def _is_our_broker(pid: int, run_dir: Path) -> bool:
    """True when pid is alive and is the kafka.Kafka JVM started for run_dir (not a reused pid)."""
    args = _process_args(pid)
    config = str(run_dir / "server.properties")  # the last argument of our java command
    return args is not None and MAIN_CLASS in args and config in args


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the JVM binds
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def _random_cluster_id() -> str:
    """Like Kafka's Uuid.randomUuid().toString(): url-safe base64 of 16 bytes, no padding."""
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not value.startswith("-"):  # Kafka rejects ids that look like a CLI flag
            return value


def render_server_properties(
    port: int, log_dir: Path, overrides: Mapping[str, str] | None = None
) -> str:
    """The template deploy/kafka/server.properties with the run-specific keys replaced."""
    controller_port = port + 1
    listeners = f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}"
    values: dict[str, str] = {
        "node.id": str(NODE_ID),
        "listeners": listeners,
        "advertised.listeners": listeners,
        "controller.quorum.bootstrap.servers": f"{HOST}:{controller_port}",
        "log.dirs": str(log_dir),
    }
    values.update(overrides or {})
    out: list[str] = []
    seen: set[str] = set()
    for line in SERVER_TEMPLATE.read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if "=" in line and not line.lstrip().startswith(("#", "!")) and key in values:
            out.append(f"{key}={values[key]}")
            seen.add(key)
        else:
            out.append(line)
    extra = [f"{k}={v}" for k, v in values.items() if k not in seen]
    if extra:
        out += ["", "# Added by deploy/kafka/broker.py", *extra]
    return "\n".join(out) + "\n"


@dataclass
class Broker:
    """A broker started by :func:`start_broker` (or found running by :func:`find_broker`)."""

    port: int
    pid: int
    run_dir: Path
    version: str
    cluster_id: str = ""
    started_at: float = 0.0  # time.time() when `start` began (after the jar fetch)
    format_seconds: float = 0.0
    startup_seconds: float = 0.0  # start began -> broker answered, format included
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def host(self) -> str:
        return HOST

    @property
    def controller_port(self) -> int:
        return self.port + 1

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.run_dir / "logs" / "server.log"

    def is_running(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return _is_our_broker(self.pid, self.run_dir)

    def wait(self, timeout: float = DEFAULT_START_TIMEOUT) -> float:
        return wait_until_ready(
            HOST, self.port, timeout, alive=self.is_running, log_path=self.log_path
        )

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT, save_log: Path | None = None) -> None:
        """SIGTERM (controlled shutdown), SIGKILL after ``timeout``; then remove the run dir."""
        with _file_lock(_lock_path(self.port)):
            _terminate(self, timeout)
            _remove_run_dir(self.run_dir, save_log)

    def state(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "controller_port": self.controller_port,
            "bootstrap": self.bootstrap,
            "pid": self.pid,
            "run_dir": str(self.run_dir),
            "log": str(self.log_path),
            "version": self.version,
            "cluster_id": self.cluster_id,
            "started_at": self.started_at,
            "format_seconds": self.format_seconds,
            "startup_seconds": self.startup_seconds,
        }

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _lock_path(port: int) -> Path:
    return run_root() / f".{port}.lock"


def _state_path(port: int) -> Path:
    return run_dir_for(port) / "broker.json"


def _write_state(broker: Broker) -> None:
    (broker.run_dir / "broker.pid").write_text(f"{broker.pid}\n")
    (broker.run_dir / "bootstrap").write_text(f"{broker.bootstrap}\n")
    tmp = _state_path(broker.port).with_suffix(".tmp")
    tmp.write_text(json.dumps(broker.state(), indent=2) + "\n")
    tmp.replace(_state_path(broker.port))


def _read_state(port: int) -> Broker | None:
    run_dir = run_dir_for(port)
    try:
        data = json.loads(_state_path(port).read_text())
        return Broker(
            port=int(data["port"]),
            pid=int(data["pid"]),
            run_dir=Path(data["run_dir"]),
            version=str(data["version"]),
            cluster_id=str(data.get("cluster_id", "")),
            started_at=float(data.get("started_at", 0.0)),
            format_seconds=float(data.get("format_seconds", 0.0)),
            startup_seconds=float(data.get("startup_seconds", 0.0)),
        )
    except FileNotFoundError:
        pass
    except (ValueError, KeyError, TypeError):
        _log(f"unreadable state file {_state_path(port)}")
    pid_file = run_dir / "broker.pid"  # no/corrupt state but a pid file: still track it
    if pid_file.is_file() and pid_file.read_text().strip().isdigit():
        return Broker(
            port=port, pid=int(pid_file.read_text()), run_dir=run_dir, version=kafka_version()
        )
    return None


def _remove_run_dir(run_dir: Path, save_log: Path | None = None) -> None:
    log = run_dir / "logs" / "server.log"
    if save_log is not None and log.is_file():
        save_log.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log, save_log)
    shutil.rmtree(run_dir, ignore_errors=True)


def _terminate(broker: Broker, timeout: float) -> bool:
    """Stop the broker process; True if one was running."""
    if not broker.is_running():
        if broker.process is not None:
            broker.process.wait()
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(broker.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while broker.is_running() and time.monotonic() < deadline:
        time.sleep(0.05)
    if broker.is_running():
        _log(f"broker pid {broker.pid} still running after {timeout:.0f}s: SIGKILL")
        with contextlib.suppress(ProcessLookupError):
            os.kill(broker.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while broker.is_running() and time.monotonic() < deadline:
            time.sleep(0.05)
        if broker.is_running():
            raise BrokerError(f"broker pid {broker.pid} survived SIGKILL")
    if broker.process is not None:
        broker.process.wait()
    return True


def find_broker(port: int | None = None) -> Broker | None:
    """The broker this tool started on ``port`` if it still runs, else None."""
    port = _check_port(port) if port is not None else default_port()
    broker = _read_state(port)
    return broker if broker is not None and broker.is_running() else None


def start_broker(
    port: int | None = None,
    *,
    wait: bool = True,
    timeout: float = DEFAULT_START_TIMEOUT,
    heap: str | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Broker:
    """Fetch the jars if needed, format a fresh log dir and start the broker in the background.

    Refuses (BrokerAlreadyRunning / PortInUse) when a broker already runs on ``port`` or the
    port or port + 1 is taken; a stale pid/state left by a dead broker is cleaned up first.
    With ``wait`` (default) it returns only once the broker answers ApiVersions + Metadata.
    The JVM is started in its own session, so it outlives the calling process until
    :meth:`Broker.stop` (or ``broker.py stop``).
    """
    port = _check_port(port) if port is not None else default_port()
    version = kafka_version()
    libs = ensure_jars(version)
    java = _java()
    run_dir = run_dir_for(port)
    with _file_lock(_lock_path(port)):
        previous = _read_state(port)
        if previous is not None and previous.is_running():
            raise BrokerAlreadyRunning(
                f"a Kafka broker already runs on {previous.bootstrap} (pid {previous.pid}, "
                f"run dir {previous.run_dir}); stop it first: "
                f"python deploy/kafka/broker.py stop --port {port}"
            )
        if previous is not None:
            _log(f"cleaning up stale state of dead broker pid {previous.pid} in {run_dir}")
        if run_dir.exists():
            _remove_run_dir(run_dir)
        for p in (port, port + 1):
            if not _port_free(p):
                raise PortInUse(
                    f"{HOST}:{p} is already in use by another process; "
                    f"pick another port with --port or KASSASYNC_KAFKA_PORT"
                )

        started = time.monotonic()
        started_at = time.time()
        (run_dir / "logs").mkdir(parents=True)
        data_dir = Path(tempfile.mkdtemp(prefix="data-", dir=run_dir))
        config = run_dir / "server.properties"
        config.write_text(render_server_properties(port, data_dir, overrides))
        classpath = f"{libs}{os.sep}*"
        cluster_id = _random_cluster_id()
        base_jvm = [
            java,
            # C1 only: ~30% faster start-up; tests never run long enough to profit from C2.
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={run_dir / 'logs'}",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        ]
        fmt = subprocess.run(
            [
                *base_jvm,
                "-Dkafka.log.file=format.log",
                "-Xmx256m",
                "-cp",
                classpath,
                STORAGE_TOOL,
                "format",
                "--cluster-id",
                cluster_id,
                "--config",
                str(config),
                "--standalone",  # KIP-853 dynamic quorum: this node is the only voter
            ],
            capture_output=True,
            text=True,
            cwd=run_dir,
        )
        if fmt.returncode != 0:
            raise BrokerError(f"kafka-storage format failed:\n{fmt.stdout}{fmt.stderr}")
        format_seconds = time.monotonic() - started

        heap = heap or os.environ.get("KASSASYNC_KAFKA_HEAP", DEFAULT_HEAP)
        extra_opts = shlex.split(os.environ.get("KASSASYNC_KAFKA_JVM_OPTS", ""))
        cmd = [
            *base_jvm,
            f"-Xmx{heap}",
            "-Xms128m",
            "-XX:+ExitOnOutOfMemoryError",
            *extra_opts,
            "-cp",
            classpath,
            MAIN_CLASS,
            str(config),
        ]
        with (run_dir / "logs" / "stdout.log").open("wb") as stdout:
            process = subprocess.Popen(
                cmd,
                cwd=run_dir,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # not killed by the caller's Ctrl-C / exit
            )
        broker = Broker(
            port=port,
            pid=process.pid,
            run_dir=run_dir,
            version=version,
            cluster_id=cluster_id,
            started_at=started_at,
            format_seconds=round(format_seconds, 3),
            process=process,
        )
        _write_state(broker)
    if wait:
        try:
            broker.wait(timeout)
        except BaseException:
            # Kill it but keep the run dir (logs) for a post-mortem; the next start cleans it.
            with _file_lock(_lock_path(port)):
                _terminate(broker, 10)
            raise
        broker.startup_seconds = round(time.monotonic() - started, 3)
        _write_state(broker)
    return broker


def stop_broker(
    port: int | None = None,
    timeout: float = DEFAULT_STOP_TIMEOUT,
    save_log: Path | None = None,
) -> bool:
    """Stop the broker on ``port`` and remove its run dir. Safe when none runs; True if one ran."""
    port = _check_port(port) if port is not None else default_port()
    run_dir = run_dir_for(port)
    with _file_lock(_lock_path(port)):
        broker = _read_state(port)
        was_running = broker is not None and _terminate(broker, timeout)
        _remove_run_dir(run_dir, save_log)
    return was_running


def broker_status(port: int | None = None) -> dict[str, Any]:
    """JSON-able status of the broker on ``port``; cleans up a stale run dir."""
    port = _check_port(port) if port is not None else default_port()
    with _file_lock(_lock_path(port)):
        broker = _read_state(port)
        status: dict[str, Any] = {
            "running": False,
            "port": port,
            "bootstrap": f"{HOST}:{port}",
            "version": kafka_version(),
            "libs": str(libs_dir()),
            "jars_cached": _jars_complete(libs_dir()),
        }
        if broker is None:
            return status
        if not broker.is_running():
            _remove_run_dir(broker.run_dir)
            status["stale_state_removed"] = True
            return status
    status.update(broker.state())
    status["running"] = True
    status["uptime_seconds"] = round(time.time() - broker.started_at, 1)
    try:
        result = probe(HOST, port, timeout=2.0)
        status["answering"] = True
        status["cluster_id"] = result.cluster_id
        status["brokers"] = [f"{h}:{p} (node {n})" for n, h, p in result.brokers]
    except (OSError, BrokerError, struct.error) as exc:
        status["answering"] = False
        status["probe_error"] = repr(exc)
    return status


@contextlib.contextmanager
def running_broker(port: int | None = None, **kwargs: Any) -> Iterator[Broker]:
    """``with running_broker(19092) as broker:`` start, yield, always stop."""
    broker = start_broker(port, **kwargs)
    try:
        yield broker
    finally:
        broker.stop()


# --------------------------------------------------------------------------- CLI


def _add_port(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"PLAINTEXT port on {HOST} (controller: port + 1); "
        f"default $KASSASYNC_KAFKA_PORT or {DEFAULT_PORT}",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="broker.py", description="Local single-node Apache Kafka (KRaft) for tests and dev."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_fetch = sub.add_parser("fetch", help="fetch the broker jars (no-op when cached)")
    p_fetch.add_argument("--force", action="store_true", help="fetch again even if cached")
    p_start = sub.add_parser("start", help="format + start in the background, print bootstrap")
    _add_port(p_start)
    p_start.add_argument("--timeout", type=float, default=DEFAULT_START_TIMEOUT)
    p_start.add_argument("--no-wait", action="store_true", help="return before it answers")
    p_start.add_argument("--heap", default=None, help=f"JVM -Xmx (default {DEFAULT_HEAP})")
    p_wait = sub.add_parser("wait", help="block until the broker answers")
    _add_port(p_wait)
    p_wait.add_argument("--bootstrap", default=None, help="HOST:PORT instead of --port")
    p_wait.add_argument("--timeout", type=float, default=DEFAULT_START_TIMEOUT)
    p_stop = sub.add_parser("stop", help="stop the broker and remove its run dir")
    _add_port(p_stop)
    p_stop.add_argument("--timeout", type=float, default=DEFAULT_STOP_TIMEOUT)
    p_stop.add_argument("--save-log", type=Path, default=None, help="copy server.log here first")
    p_status = sub.add_parser("status", help="print the broker status as JSON")
    _add_port(p_status)
    args = parser.parse_args(argv)

    def interrupted(signum: int, _frame: object) -> None:
        # Unwind (SystemExit) instead of dying on the spot, so an interrupted `start`
        # kills the JVM it just launched instead of leaving an orphan broker behind.
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupted)
    try:
        if args.command == "fetch":
            started = time.monotonic()
            libs = ensure_jars(force=args.force)
            _log(f"Kafka {kafka_version()} jars ready in {time.monotonic() - started:.1f}s")
            print(libs)
        elif args.command == "start":
            broker = start_broker(
                args.port, wait=not args.no_wait, timeout=args.timeout, heap=args.heap
            )
            how = (
                f"answering after {broker.startup_seconds:.2f}s "
                f"(format {broker.format_seconds:.2f}s)"
                if not args.no_wait
                else "not waited for"
            )
            _log(
                f"Kafka {broker.version} started on {broker.bootstrap} (pid {broker.pid}), "
                f"{how}; log: {broker.log_path}"
            )
            print(broker.bootstrap)
        elif args.command == "wait":
            if args.bootstrap:
                host, port = parse_bootstrap(args.bootstrap)
                waited = wait_until_ready(host, port, args.timeout)
                _log(f"Kafka at {host}:{port} answered after waiting {waited:.2f}s")
            else:
                port = _check_port(args.port) if args.port is not None else default_port()
                found = _read_state(port)
                if found is None or not found.is_running():
                    raise BrokerError(f"no broker started by broker.py runs on port {port}")
                found.wait(args.timeout)
                if not found.startup_seconds:
                    found.startup_seconds = round(time.time() - found.started_at, 3)
                    _write_state(found)
                _log(
                    f"Kafka {found.version} on {found.bootstrap} answering; start-up took "
                    f"{found.startup_seconds:.2f}s"
                )
            print(args.bootstrap or f"{HOST}:{port}")
        elif args.command == "stop":
            was_running = stop_broker(args.port, args.timeout, args.save_log)
            _log("broker stopped" if was_running else "no broker was running")
        elif args.command == "status":
            print(json.dumps(broker_status(args.port), indent=2))
    except BrokerError as exc:
        _log(f"error: {exc}")
        return 1
    except BrokenPipeError:  # e.g. `status | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
