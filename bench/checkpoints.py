"""Write times of the journal records and checkpoints that push-mode training responses wait for, on the real broker.

Push-mode training responds to a request once the checkpoints topic contains it. Between
checkpoints that is one journal record with the request's events. A checkpoint writes the
learner and every sample waiting for a partner, so it grows with them. This times both,
side by side on one compacted topic: `KafkaCheckpoints.append` of one feature vector, and
`KafkaCheckpoints.save` of the learner alone and with `WAITING` vectors waiting for labels.
"""

from __future__ import annotations

import statistics
import time
import uuid

from streamml.common.changelog import ensure_compacted_topic
from streamml.common.kafka import Emitter
from streamml.common.settings import KafkaSettings

WAITING = 1500
REPEATS = 40


def _median_ms(action, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1e3, 2)


def measure(settings: KafkaSettings, workload) -> dict[str, float]:
    """Return the median milliseconds of a one-event journal record and of checkpoints with 0 and `WAITING` vectors waiting."""
    from streamml.training.checkpoints import KafkaCheckpoints
    from streamml.training.handler import TrainingHandler

    topic = f"bench-checkpoints-{uuid.uuid4().hex[:8]}"
    ensure_compacted_topic(settings, topic)
    emitter = Emitter(settings)
    try:
        checkpoints = KafkaCheckpoints(settings, topic, emitter, workload.spec.model_name)
        alone = TrainingHandler(workload.spec)
        waiting = TrainingHandler(workload.spec)
        waiting.handle_batch(workload.vectors[:WAITING])
        vector = workload.vectors[0]
        return {
            "journal_record_ms": _median_ms(lambda: checkpoints.append([vector])),
            "checkpoint_alone_ms": _median_ms(lambda: checkpoints.save(alone)),
            "checkpoint_waiting_ms": _median_ms(lambda: checkpoints.save(waiting)),
            "waiting": WAITING,
            "repeats": REPEATS,
        }
    finally:
        emitter.close()
