"""The job kinds Runwatch can run, by name."""

from etl.jobs.base import Batch, Job, JobError, RunContext
from etl.jobs.csv_import import CsvImportJob
from etl.jobs.demo import DemoJob
from etl.jobs.sse_follow import RemoteMirrorJob, SseFollowJob

JOB_KINDS: dict[str, type[Job]] = {
    DemoJob.kind: DemoJob,
    CsvImportJob.kind: CsvImportJob,
    SseFollowJob.kind: SseFollowJob,
    RemoteMirrorJob.kind: RemoteMirrorJob,
}


def job_class(kind: str) -> type[Job]:
    """The job class of `kind`, or JobError listing the known kinds."""
    try:
        return JOB_KINDS[kind]
    except KeyError:
        known = ", ".join(sorted(JOB_KINDS))
        raise JobError(f"Unknown job kind '{kind}' (known: {known}).") from None


__all__ = ["JOB_KINDS", "Batch", "Job", "JobError", "RunContext", "job_class"]
