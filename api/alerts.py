"""The API's alert routes: recent alerts with their delivery attempts, and the rules (etl.commands)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from api.auth import AUTH_ERRORS, CallerOf, caller_of
from api.models import ErrorBody, JobName
from api.routes import ERRORS, engine_of
from db.models import MAX_ID, AlertDelivery, AlertRule, Channel
from db.queries import AlertView, list_alerts, list_rules, read_session, unread_count
from etl import commands

router = APIRouter(tags=["alerts"], dependencies=[Depends(caller_of)], responses=AUTH_ERRORS)


class DeliveryItem(BaseModel):
    """One delivery attempt of an alert."""

    attempt: int
    channel: str
    target: str
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: float | None
    at: datetime

    @classmethod
    def from_delivery(cls, delivery: AlertDelivery) -> DeliveryItem:
        """The public shape of an attempt."""
        return cls.model_validate(delivery, from_attributes=True)


class AlertItem(BaseModel):
    """An alert: the event a rule matched, where it went and how each attempt went."""

    id: int
    rule_id: int | None
    kind: str
    job: str | None
    run_id: int | None
    channel: str
    target: str
    message: str
    status: str = Field(description="pending, sent, failed, or app (shown in the app only).")
    created_at: datetime
    read_at: datetime | None
    deliveries: list[DeliveryItem]

    @classmethod
    def from_view(cls, view: AlertView) -> AlertItem:
        """The public shape of an alert with its attempts."""
        fields = view.alert.model_dump()
        return cls(**fields, deliveries=[DeliveryItem.from_delivery(d) for d in view.deliveries])


class AlertPage(BaseModel):
    """The newest alerts, and how many are unread in all."""

    unread: int
    items: list[AlertItem]


class RuleRequest(BaseModel):
    """A new alert rule; `limit` is in the kind's unit (slow s, no_success h, stuck s, queue_wait min)."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="failed, slow, no_success, stuck or queue_wait.")
    channel: Channel
    target: str = Field("", max_length=2000, pattern=r"^[^\x00]*$")
    job: JobName | None = None
    limit: float | None = Field(None, gt=0)


class RuleItem(BaseModel):
    """An alert rule."""

    id: int
    job: str | None
    kind: str
    limit: float | None
    channel: str
    target: str
    enabled: bool
    created_at: datetime

    @classmethod
    def from_rule(cls, rule: AlertRule) -> RuleItem:
        """The public shape of a rule."""
        assert rule.id is not None
        fields = rule.model_dump(exclude={"limit_value"})
        return cls(**fields, limit=rule.limit_value)


@router.get("/api/alerts", response_model=AlertPage)
def alerts(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    unread: Annotated[bool, Query(description="Only the alerts not marked read.")] = False,
) -> AlertPage:
    """The newest alerts, newest first, each with its delivery attempts."""
    with read_session(engine_of(request)) as session:
        views = list_alerts(session=session, limit=limit, unread_only=unread)
        count = unread_count(session=session)
    return AlertPage(unread=count, items=[AlertItem.from_view(view) for view in views])


@router.get("/api/alerts/rules", response_model=list[RuleItem])
def rules(request: Request) -> list[RuleItem]:
    """Every alert rule."""
    with read_session(engine_of(request)) as session:
        return [RuleItem.from_rule(rule) for rule in list_rules(session=session)]


@router.post(
    "/api/alerts/rules",
    status_code=201,
    response_model=RuleItem,
    responses={**ERRORS, 422: {"model": ErrorBody, "description": "A bad rule."}},
)
def add_rule(request: Request, caller: CallerOf, body: RuleRequest) -> RuleItem:
    """Add an alert rule (recorded in the audit trail)."""
    rule = commands.add_alert_rule(
        engine_of(request),
        caller,
        kind=body.kind,
        channel=body.channel,
        target=body.target,
        job=body.job,
        limit=body.limit,
    )
    return RuleItem.from_rule(rule)


@router.delete("/api/alerts/rules/{rule_id}", response_model=RuleItem, responses=ERRORS)
def remove_rule(
    request: Request, caller: CallerOf, rule_id: Annotated[int, Path(ge=1, le=MAX_ID)]
) -> RuleItem:
    """Remove an alert rule; the alerts it raised stay."""
    return RuleItem.from_rule(commands.remove_alert_rule(engine_of(request), caller, rule_id))
