"""Alerts of the churn_batch DAG: a webhook POST and an email, each optional and best-effort.

Kept beside `churn_batch.py` in the dags folder (the folder is on `sys.path` wherever Airflow
parses the DAG or runs its tasks and callbacks). It imports only Airflow, the SMTP provider
(`apache-airflow-providers-smtp`, imported when an email is due, so a deployment without it
still runs the DAG: the task log says why no email went out) and the standard library.

The settings come in as `setting(name)`, the DAG's reader of its Variables: their one list is
SETTINGS in `churn_batch.py`. The deadline callback runs on its own (the executor imports it as
`churn_batch_alerts.deadline_callback`) and gets the values the DAG had at parse time.
"""

from __future__ import annotations

import html
import json
import logging
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from airflow.sdk import Variable
from airflow.sdk.log import mask_secret

Setting = Callable[[str], str]

VARIABLE_PREFIX = "churn_batch_"
WEBHOOK_TIMEOUT_SECONDS = 10

log = logging.getLogger(__name__)


def post_webhook(setting: Setting, setting_name: str, text: str) -> bool:
    """POST {"text": text} to the URL in that setting; False (logged) if unset or it fails."""
    url = setting(setting_name)
    if not url:
        log.info("no %s%s set: not sending: %s", VARIABLE_PREFIX, setting_name, text)
        return False
    mask_secret(url)  # a webhook URL carries its credentials (Slack's do)
    body = json.dumps({"text": text}).encode()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:
            response.read()
    except Exception as exc:  # noqa: BLE001 - an alert that cannot go out must not fail the run
        log.warning("webhook %s%s failed: %s", VARIABLE_PREFIX, setting_name, exc)
        return False
    log.info("sent to %s%s: %s", VARIABLE_PREFIX, setting_name, text)
    return True


def email_body(text: str, details: Mapping[str, Any]) -> str:
    """The alert's text, then the run's details as a table (HTML, every value escaped)."""
    rows = "".join(
        f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in details.items()
    )
    return f"<pre>{html.escape(text)}</pre><table>{rows}</table>"


def send_email(setting: Setting, subject: str, text: str, details: Mapping[str, Any]) -> bool:
    """Email the alert through the SMTP provider's SmtpNotifier; False (logged) if not sent."""
    to = [address.strip() for address in setting("email_to").split(",") if address.strip()]
    if not to:
        log.info("no %semail_to set: not emailing: %s", VARIABLE_PREFIX, subject)
        return False
    conn_id = setting("email_conn_id")
    try:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        notifier = SmtpNotifier(
            to=to,
            from_email=setting("email_from") or None,  # None: the connection's from_email
            subject=subject,
            html_content=email_body(text, details),
            smtp_conn_id=conn_id,
        )
        # notify(), not notifier(context): the fields are final text, not Jinja templates.
        notifier.notify({})
    except Exception as exc:  # noqa: BLE001 - like the webhook, email never fails the run
        log.warning(
            "email to %s (connection %s) not sent: %s: %s",
            ", ".join(to),
            conn_id,
            type(exc).__name__,
            exc,
        )
        return False
    log.info("emailed %s: %s", ", ".join(to), subject)
    return True


def alert(setting: Setting, subject: str, text: str, details: Mapping[str, Any]) -> None:
    """Send one alert both ways: the webhook (its text) and the email (subject, text, details)."""
    post_webhook(setting, "webhook_url", text)
    send_email(setting, subject, text, details)


def run_details(context: Mapping[str, Any]) -> dict[str, Any]:
    """What identifies a task's run in an alert: DAG, run, logical date, task, try, log."""
    ti = context["ti"]
    return {
        "DAG": ti.dag_id,
        "run": ti.run_id,
        "logical date": context["ds"],
        "task": ti.task_id,
        "try": f"{ti.try_number} of {ti.max_tries + 1}",
        "log": ti.log_url,
    }


def task_failed(setting: Setting, context: Mapping[str, Any]) -> None:
    """The alert for a task that failed for good (no retry left, or not retryable)."""
    exc = context.get("exception")
    ti = context["ti"]
    text = (
        f"{ti.dag_id} {context['ds']}: task {ti.task_id} failed "
        f"(try {ti.try_number} of {ti.max_tries + 1}): {type(exc).__name__}: {exc}. "
        f"Log: {ti.log_url}"
    )
    subject = f"{ti.dag_id} {context['ds']}: task {ti.task_id} failed"
    alert(setting, subject, text, run_details(context))


def deadline_callback(
    context: Mapping[str, Any], deadline_seconds: int, parsed: Mapping[str, str]
) -> None:
    """The DeadlineAlert's SyncCallback; `parsed` has the alert settings as parsed (no secrets).

    Airflow 3.3.2 gives an executor callback a token that the Execution API refuses for
    Variables and Connections (403), so only those in the environment or a secrets backend
    are readable here; a refused Variable falls back to its parsed value, the webhook URL
    (a secret, hence not in the serialized DAG) to none."""

    def setting(name: str) -> str:
        try:
            value = Variable.get(VARIABLE_PREFIX + name, default=None)
        except Exception as exc:  # noqa: BLE001 - AirflowSecretsBackendAccessDenied, API errors
            log.warning(
                "cannot read %s%s here (%s): using its parsed value", VARIABLE_PREFIX, name, exc
            )
            value = None
        return parsed.get(name, "") if value is None else str(value).strip()

    deadline_missed(setting, context, deadline_seconds)


def deadline_missed(setting: Setting, context: Mapping[str, Any], deadline_seconds: int) -> None:
    """The alert for a run still unfinished at its deadline (`context` is the deadline's:
    `dag_run` as the REST API shows it, and `deadline`)."""
    run = context.get("dag_run") or {}
    deadline = context.get("deadline") or {}
    day = str(run.get("logical_date") or run.get("run_after") or "?")[:10]
    dag_id = run.get("dag_id", "?")
    text = (
        f"{dag_id} {day}: run {run.get('dag_run_id')} not finished {deadline_seconds} s after "
        f"it was queued (queued at {run.get('queued_at')}, deadline "
        f"{deadline.get('deadline_time')}, state now {run.get('state')})"
    )
    details = {
        "DAG": dag_id,
        "run": run.get("dag_run_id"),
        "logical date": run.get("logical_date"),
        "queued at": run.get("queued_at"),
        "deadline": deadline.get("deadline_time"),
        "state": run.get("state"),
    }
    alert(setting, f"{dag_id} {day}: run late (deadline missed)", text, details)
