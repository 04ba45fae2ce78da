"""The two runtimes as the harness drives them: child processes it can kill, the ingest URL the
tills send to, and the checks that only the runtime's own storage can answer.

* :class:`EmbeddedTarget`: one ``kassasync run`` process (ingest API, reconcilers, executors
  and the SQLite log in one); killing it kills everything at once.
* :class:`KafkaTarget`: two ``kassasync worker`` processes and one ``kassasync kafka ingest``
  process against a Kafka broker of the harness's own (:class:`OwnBroker`), which it can
  restart in place (same data, same port) once during a run.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Protocol

from chaos.processes import REPO, Proc, free_port, wait_port
from chaos.workload import Workload
from chaos.world import World

ADMIN_TOKEN = "chaos-harness-admin-token-0123456789"
BROKER_SCRIPT = REPO / "deploy" / "kafka" / "broker.py"


class Target(Protocol):
    name: str
    procs: list[Proc]

    async def setup(self, world: World, workload: Workload) -> dict[str, str]:
        """Register the tenants; returns each tenant's ingest key."""
        ...

    def ingest_url(self, tenant: str) -> str: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def quiet(self) -> bool | None:
        """Nothing left to process or deliver (None: the runtime cannot tell from outside)."""
        ...

    async def unlogged(self, acknowledged: dict[str, list[str]]) -> list[str]:
        """Acknowledged event ids that are not on the runtime's log."""
        ...

    async def disturb(self) -> str | None:
        """A one-off disturbance beyond process kills (the Kafka broker restart)."""
        ...


def engine_env(key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSASYNC_")}
    env.update(
        KASSASYNC_SECRET_KEY=key,
        KASSASYNC_ADMIN_TOKEN=ADMIN_TOKEN,
        PYTHONUNBUFFERED="1",
    )
    return env


class EmbeddedTarget:
    name = "embedded"

    def __init__(self, work: Path, key: str) -> None:
        self.work = work
        self.key = key
        self.data = work / "engine"
        self.port = free_port()
        self.engine = Proc.kassasync(
            "engine",
            ["run", "--data", str(self.data), "--http-port", str(self.port)],
            engine_env(key),
            work / "engine.log",
        )
        self.procs = [self.engine]

    async def setup(self, world: World, workload: Workload) -> dict[str, str]:
        from engine.secrets import SecretBox
        from engine.store.db import Database
        from engine.tenants import TenantDirectory

        directory = TenantDirectory(Database(self.data / "kassasync.db"), SecretBox(self.key))
        keys: dict[str, str] = {}
        try:
            for plan in workload.plans:
                key = directory.upsert(world.config(plan.tenant, plan.settings()))
                assert key is not None
                keys[plan.tenant] = key
        finally:
            directory.db.close()
        return keys

    def ingest_url(self, tenant: str) -> str:
        return f"http://127.0.0.1:{self.port}/v1/tenants/{tenant}/events"

    async def start(self) -> None:
        self.engine.start()
        await asyncio.to_thread(wait_port, self.port, 60)

    async def stop(self) -> None:
        await asyncio.to_thread(self.engine.stop)

    def quiet(self) -> bool | None:
        from engine.embedded.processor import Processor
        from engine.store.db import Database

        db = Database(self.data / "kassasync.db")
        try:
            lag = Processor(db).lag()
            depth = db.conn.execute(
                "SELECT COUNT(*) FROM outbox WHERE status = 'pending'"
            ).fetchone()[0]
            wake = db.conn.execute("SELECT COUNT(*) FROM wake").fetchone()[0]
            return not any(lag.values()) and not depth and not wake
        finally:
            db.close()

    async def unlogged(self, acknowledged: dict[str, list[str]]) -> list[str]:
        from engine.store.db import Database

        db = Database(self.data / "kassasync.db")
        try:
            missing = []
            for tenant, ids in acknowledged.items():
                seen = {
                    r[0]
                    for r in db.conn.execute(
                        "SELECT msg_id FROM ingest_seen WHERE tenant = ?", (tenant,)
                    )
                }
                missing += [f"{tenant}/{i}" for i in ids if i not in seen]
            return missing
        finally:
            db.close()

    async def disturb(self) -> str | None:
        return None


class OwnBroker:
    """A Kafka broker on a port of the harness's own (``deploy/kafka/broker.py``), which it can
    restart in place: same JVM command line, same formatted data directory, same port."""

    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self.bootstrap = f"127.0.0.1:{port}"
        self._relaunched: subprocess.Popen[bytes] | None = None

    def _script(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            [sys.executable, str(BROKER_SCRIPT), *args],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        with self.log.open("a") as out:
            out.write(f"$ broker.py {' '.join(args)}\n{done.stdout}{done.stderr}")
        if check and done.returncode != 0:
            raise RuntimeError(f"broker.py {' '.join(args)} failed: {done.stderr[-2000:]}")
        return done.stdout.strip()

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._script("start", "--port", str(self.port))

    def stop(self) -> None:
        self._script("stop", "--port", str(self.port), check=False)
        if self._relaunched is not None:
            self._relaunched.wait(timeout=60)

    def _state(self) -> dict[str, object]:
        status = json.loads(self._script("status", "--port", str(self.port)))
        return dict(status)

    def restart(self) -> float:
        """Stop the broker (SIGTERM: a controlled shutdown) and start the same JVM again on the
        same data; returns the seconds it was unreachable."""
        state = self._state()
        pid = int(str(state["pid"]))
        run_dir = Path(str(state["run_dir"]))
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        started = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        while Path(f"/proc/{pid}").exists():
            if time.monotonic() - started > 60:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        time.sleep(1.0)
        with (run_dir / "logs" / "stdout.log").open("ab") as out:
            self._relaunched = subprocess.Popen(
                [a.decode() for a in argv],
                cwd=run_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        # broker.py keeps the pid in its state files: point them at the new JVM so that
        # `broker.py stop` stops it.
        (run_dir / "broker.pid").write_text(f"{self._relaunched.pid}\n")
        state_file = run_dir / "broker.json"
        saved = json.loads(state_file.read_text())
        saved["pid"] = self._relaunched.pid
        state_file.write_text(json.dumps(saved, indent=2) + "\n")
        self._script("wait", "--bootstrap", self.bootstrap, "--timeout", "120")
        return time.monotonic() - started


class KafkaTarget:
    name = "kafka"

    def __init__(self, work: Path, key: str, broker: OwnBroker, *, partitions: int = 4) -> None:
        from engine.kafka.config import KafkaConfig

        self.work = work
        self.key = key
        self.broker = broker
        self.config = KafkaConfig(
            bootstrap=broker.bootstrap,
            prefix=f"chaos{uuid.uuid4().hex[:8]}.",
            partitions=partitions,
            data_dir=work,
        )
        self.port = free_port()
        env = engine_env(key)
        common = [
            "--bootstrap",
            self.config.bootstrap,
            "--prefix",
            self.config.prefix,
            "--partitions",
            str(partitions),
        ]
        self.workers = [
            Proc.kassasync(
                name,
                [
                    "worker",
                    *common,
                    "--data",
                    str(work / name),
                    "--tokens",
                    str(work / "tokens.db"),
                    "--masterdata-seconds",
                    "30",
                    "--idle-seconds",
                    "0.05",
                ],
                env,
                work / f"{name}.log",
            )
            for name in ("worker-1", "worker-2")
        ]
        self.ingest = Proc.kassasync(
            "ingest",
            ["kafka", "ingest", *common, "--port", str(self.port)],
            env,
            work / "ingest.log",
        )
        self.procs = [*self.workers, self.ingest]

    async def setup(self, world: World, workload: Workload) -> dict[str, str]:
        from engine.kafka.directory import KafkaTenantDirectory
        from engine.kafka.topics import init_topics
        from engine.secrets import SecretBox

        await asyncio.to_thread(init_topics, self.config)
        directory = KafkaTenantDirectory(self.config, SecretBox(self.key))
        keys: dict[str, str] = {}
        for plan in workload.plans:
            key = await asyncio.to_thread(
                directory.upsert, world.config(plan.tenant, plan.settings())
            )
            assert key is not None
            keys[plan.tenant] = key
        return keys

    def ingest_url(self, tenant: str) -> str:
        return f"http://127.0.0.1:{self.port}/v1/tenants/{tenant}/events"

    async def start(self) -> None:
        for proc in self.procs:
            proc.start()
        await asyncio.to_thread(wait_port, self.port, 60)

    async def stop(self) -> None:
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in self.procs))

    def quiet(self) -> bool | None:
        return None

    async def unlogged(self, acknowledged: dict[str, list[str]]) -> list[str]:
        return await asyncio.to_thread(self._unlogged, acknowledged)

    def _unlogged(self, acknowledged: dict[str, list[str]]) -> list[str]:
        from kafka import KafkaConsumer, TopicPartition

        from topics.names import Topic

        consumer = KafkaConsumer(bootstrap_servers=self.config.bootstrap, enable_auto_commit=False)
        try:
            name = self.config.topic(Topic.TILL_EVENTS)
            tps = [TopicPartition(name, p) for p in range(self.config.partitions)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            ends = consumer.end_offsets(tps)
            seen: set[tuple[str, str]] = set()
            deadline = time.monotonic() + 60
            while any(consumer.position(tp) < ends[tp] for tp in tps):
                if time.monotonic() > deadline:
                    raise RuntimeError("could not read till.events to its end")
                for records in consumer.poll(timeout_ms=500).values():
                    for record in records:
                        event = json.loads(record.value)
                        seen.add((str(event.get("tenant")), str(event.get("id"))))
        finally:
            consumer.close()
        return [
            f"{tenant}/{i}"
            for tenant, ids in acknowledged.items()
            for i in ids
            if (tenant, i) not in seen
        ]

    async def disturb(self) -> str | None:
        down = await asyncio.to_thread(self.broker.restart)
        return f"broker restarted ({down:.1f}s unreachable)"
