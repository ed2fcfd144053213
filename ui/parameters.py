"""A job kind's parameters as the dialog and the Jobs page show them."""

from __future__ import annotations

from etl.jobs import JOB_KINDS


def parameters_markdown(kind: str) -> str:
    """One bullet per parameter of `kind`: name, type, default or required, and what it does."""
    job_class = JOB_KINDS.get(kind)
    if job_class is None or not job_class.parameters:
        return f"Kind `{kind}` takes no parameters here."
    return "\n".join(
        f"- `{p.name}` ({p.type}, {'**required**' if p.required else p.note()}): {p.help}"
        for p in job_class.parameters
    )


def has_required(kind: str) -> bool:
    """Whether a run of `kind` needs a parameter the caller must give (so the dialog opens its list)."""
    job_class = JOB_KINDS.get(kind)
    return job_class is not None and any(param.required for param in job_class.parameters)
