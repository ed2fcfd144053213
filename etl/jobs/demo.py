"""The demo job: a deterministic synthetic catalogue of categories and subjects."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

from sqlmodel import Session

from db.models import DemoCategory, DemoSubject
from db.queries import upsert
from etl.jobs.base import Batch, Job, JobError, int_param

SUBJECTS_PER_CATEGORY = 50


class DemoJob(Job):
    """Loads `total` subjects in `batch_size` batches, sleeping `delay_ms` per batch.

    `fail_at` makes the first attempt fail on reaching that record (a resume or retry gets past it),
    so failure and recovery can be shown on demand. `seed` fixes the generated values.
    """

    kind = "demo"
    description = "Synthetic catalogue of categories and subjects, for demos and benchmarks."

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        checked = {
            "total": int_param(params, "total", 10000),
            "batch_size": int_param(params, "batch_size", 500, minimum=1),
            "delay_ms": int_param(params, "delay_ms", 0),
            "fail_at": int_param(params, "fail_at", None),
            "seed": int_param(params, "seed", 42),
        }
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
