"""Retention cleanup, as a fleet policy: the ``RETENTION_*`` settings are a shorthand for one policy per account.

There is one fan-out mechanism (``shared/fanout.py``); retention is a policy of it, built here from the
settings, validated with every other policy at start-up (``shared/policies.py``) and enqueued by the
``retention_cleanup`` timer (README, "Retention cleanup and alert remediation"):

    {"name": "retention-<account>", "action": "deleteTask", "account": "<account>",
     "jobSelect": {"idPrefix": "<RETENTION_JOB_PREFIX>", "state": "<RETENTION_JOB_STATE>"},
     "select": {"state": "completed", "olderThan": "P<RETENTION_DAYS>D", "result": "success"},
     "limit": <RETENTION_MAX_COMMANDS>, "dryRun": <RETENTION_DRY_RUN>}

(``state`` only when ``RETENTION_JOB_STATE`` is set; ``result`` only with ``RETENTION_TASK_RESULT=success``.)
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Final

from shared.config import RetentionSettings

NAME_PREFIX: Final = "retention-"
_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,30}")


def policy_name(account: str) -> str:
    """``retention-<account>``; a digest of the alias when the alias is not a short plain name."""
    if _NAME.fullmatch(account):
        return NAME_PREFIX + account
    return NAME_PREFIX + hashlib.sha256(account.encode("utf-8")).hexdigest()[:12]


def policy_fields(retention: RetentionSettings, account: str) -> dict[str, Any]:
    """The retention policy of one account, as a POLICIES entry."""
    job_select: dict[str, Any] = {"idPrefix": retention.job_prefix}
    if retention.job_state:
        job_select["state"] = retention.job_state
    select: dict[str, Any] = {"state": "completed", "olderThan": f"P{retention.days}D"}
    if retention.task_result == "success":
        select["result"] = "success"
    return {
        "name": policy_name(account),
        "action": "deleteTask",
        "account": account,
        "jobSelect": job_select,
        "select": select,
        "limit": retention.max_commands,
        "dryRun": retention.dry_run,
    }
