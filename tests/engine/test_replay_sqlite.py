"""Replay through the real SQLite path (hypothesis): the log of a mixed run of every flow,
appended to a fresh embedded store and processed by the embedded processor, gives the state and
the commands the reconcilers gave in memory; ``engine.replay`` over the same log agrees."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from engine.embedded.processor import Processor
from engine.replay import Logged, replay
from engine.store.db import Database
from engine.store.log import Log
from engine.store.state import StateStore
from tests.reconcilers.test_replay_properties import mixed_action, mixed_run
from topics import registry
from topics.names import Topic
from topics.settings import CustomerMaster


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    master_mode=st.sampled_from(list(CustomerMaster)),
    actions=st.lists(mixed_action, min_size=20, max_size=60),
    batch=st.integers(1, 50),
)
def test_the_sqlite_path_replays_to_the_same_state_and_commands(
    master_mode: CustomerMaster, actions: list[tuple[Any, ...]], batch: int
) -> None:
    note(f"master_mode={master_mode!r} batch={batch} actions={actions!r}")
    world = mixed_run(master_mode, actions)
    tenant = world.processed[0].tenant
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "kassasync.db")
        try:
            log = Log(db)
            log.append_many(world.processed)
            processor = Processor(db, log_notes=False)
            while any(processor.lag().values()):
                result = processor.step(limit=batch)
                assert result.dead_letters == 0
            state = StateStore(db).all_records(tenant)
            commands = [
                record.payload.decode()
                for record in sorted(
                    log.read([Topic.FORTNOX_COMMANDS, Topic.TILL_COMMANDS], {}, 10**9),
                    key=lambda r: r.seq,
                )
            ]
        finally:
            db.close()
    assert state == world.state.records
    assert commands == [c.model_dump_json() for c in world.emitted]
    history = [
        Logged(str(m.TOPIC), offset, None, registry.dump(m))
        for offset, m in enumerate(world.processed)
    ]
    again = replay(tenant, history, state, set())
    assert again.skipped == 0 and again.differences == []
    assert [c["id"] for c in again.commands] == [c.id for c in world.emitted]
