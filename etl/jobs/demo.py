"""The demo job: a deterministic synthetic catalogue of categories and subjects."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

from sqlmodel import Session

from db.models import DemoCategory, DemoSubject
from db.queries import upsert
from etl.jobs.base import WHOLE_NUMBER, Batch, Job, JobError, Param, int_params

SUBJECTS_PER_CATEGORY = 50
MAX_BATCH = 1_000_000  # a batch is held in memory and loaded in one transaction
MAX_DELAY_MS = 3_600_000  # an hour per batch: far past any demo, and time.sleep accepts it


class DemoJob(Job):
    """Loads `total` subjects in `batch_size` batches, sleeping `delay_ms` per batch.

    `fail_at` makes the first attempt fail on reaching that record (a resume or retry gets past it),
    so failure and recovery can be shown on demand. `seed` fixes the generated values.
    """

    kind = "demo"
    description = "Synthetic catalogue of categories and subjects, for demos and benchmarks."
    parameters = (
        Param("total", WHOLE_NUMBER, 10000, help="subjects to generate and load"),
        Param(
            "batch_size", WHOLE_NUMBER, 500, minimum=1, maximum=MAX_BATCH, help="records per batch"
        ),
        Param(
            "delay_ms", WHOLE_NUMBER, 0, maximum=MAX_DELAY_MS, help="pause before each batch (ms)"
        ),
        Param("fail_at", WHOLE_NUMBER, help="fail the first attempt on reaching this record"),
        Param("seed", WHOLE_NUMBER, 42, help="same seed, same generated values"),
    )

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        checked = int_params(self.parameters, params)
        unknown = set(params) - set(checked)
        if unknown:
            raise JobError(f"Unknown demo parameter(s): {', '.join(sorted(unknown))}.")
        return checked

    def estimate_total(self, params: dict[str, Any]) -> int | None:
        return int(params["total"])

    def extract(self, params: dict[str, Any], offset: int) -> Iterator[Batch]:
        total, size, delay = params["total"], params["batch_size"], params["delay_ms"]
        for start in range(offset, total, size):
            if delay:
                time.sleep(delay / 1000)
            indexes = list(range(start, min(start + size, total)))
            yield Batch(records=indexes, size=len(indexes))

    def transform(self, batch: Batch) -> Batch:
        params = self.params
        fail_at = params["fail_at"]
        if fail_at is not None and self.context.resumed_from is None and fail_at in batch.records:
            raise RuntimeError(f"Demo failure provoked at record {fail_at} (fail_at).")
        seed = params["seed"]
        rows = [
            {
                "id": i,
                "category_id": i // SUBJECTS_PER_CATEGORY,
                "name": f"Subject {i:07d}",
                "score": round(random.Random(seed * 1_000_003 + i).random() * 100, 3),
            }
            for i in batch.records
        ]
        return Batch(records=rows, size=batch.size)

    def load(self, batch: Batch, session: Session) -> int:
        rows = batch.records
        if not rows:
            return 0
        categories = sorted({row["category_id"] for row in rows})
        upsert(
            session=session,
            table=DemoCategory.__table__,  # type: ignore[attr-defined]
            rows=[{"id": c, "name": f"Category {c:05d}"} for c in categories],
            key=["id"],
        )
        upsert(
            session=session,
            table=DemoSubject.__table__,  # type: ignore[attr-defined]
            rows=rows,
            key=["id"],
            increment="loads",
        )
        counters = self.context.counters
        counters["subjects_processed"] = counters.get("subjects_processed", 0) + len(rows)
        counters["categories_processed"] = rows[-1]["category_id"] + 1
        return len(rows)
