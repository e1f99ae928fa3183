"""The one call MedMesh's Synapse module makes: a question to the policy module's decision API.

`POST {decision_url}/_medmesh/decide/v1/{check}` with the decision token; no answer in time, an
error or a malformed answer is a refusal (fail closed). Holds no rules. See docs/synapse-module.md.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Optional

from twisted.internet import defer, reactor

from synapse.module_api import ModuleApi, make_deferred_yieldable, run_in_background
from synapse.module_api.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecisionConfig:
    decision_url: str
    token: str
    timeout_seconds: float
    # Whether the organisation's profile completes createRoom requests (TI-M; on_create_room).
    room_defaults: bool = False
    # Whether a local user's message into a room with members on other servers is first checked
    # against the trust list (TI-M: a 403 to the sender; check_event_for_spam).
    room_servers: bool = False


@dataclass(frozen=True)
class Answer:
    allow: bool
    errcode: str = "M_FORBIDDEN"
    error: str = ""
    # room_defaults only: the createRoom request as the organisation's profile completes it.
    config: Optional[dict[str, Any]] = None


def parse_decision_config(config: dict[str, Any], who: str = "medmesh_synapse") -> DecisionConfig:
    url = config.get("decision_url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError(f"{who}: decision_url must be the policy module's http(s) URL")
    token_file = config.get("token_file")
    if not isinstance(token_file, str):
        raise ConfigError(f"{who}: token_file must name the decision token's file")
    try:
        with open(token_file, encoding="utf8") as f:
            token = f.read().strip()
    except OSError as e:
        raise ConfigError(f"{who}: cannot read token_file {token_file}: {e}")
    if not token:
        raise ConfigError(f"{who}: token_file {token_file} is empty")
    timeout_ms = config.get("timeout_ms", 2000)
    if not isinstance(timeout_ms, int) or isinstance(timeout_ms, bool) or timeout_ms <= 0:
        raise ConfigError(f"{who}: timeout_ms must be a positive integer")
    room_defaults = config.get("room_defaults", False)
    if not isinstance(room_defaults, bool):
        raise ConfigError(f"{who}: room_defaults must be true or false")
    room_servers = config.get("room_servers", False)
    if not isinstance(room_servers, bool):
        raise ConfigError(f"{who}: room_servers must be true or false")
    return DecisionConfig(url.rstrip("/"), token, timeout_ms / 1000, room_defaults, room_servers)


# Twisted's names for a request that failed on the connection before any answer.
_STALE_CONNECTION = frozenset({"RequestTransmissionFailed", "ResponseNeverReceived"})


class DecisionClient:
    def __init__(self, config: DecisionConfig, api: ModuleApi):
        self._config = config
        self._api = api

    async def ask(self, check: str, body: dict[str, Any]) -> Answer:
        reason = ""
        # Once more on a pooled connection the policy module had just closed (the request never
        # got through): every question may be asked twice, and account_status is idempotent.
        for attempt in (1, 2):
            try:
                call = run_in_background(self._post, check, body)
                call.addTimeout(self._config.timeout_seconds, reactor)
                return await make_deferred_yieldable(call)
            except defer.TimeoutError:
                reason = "did not answer in time"
                break
            except Exception as e:  # noqa: BLE001 - every failure is a refusal (fail closed)
                # Synapse's HTTP client logs a failed request with `e.args[0]`, which raises
                # IndexError for a failure without args: that failure is the IndexError's context.
                cause = e.__context__ if isinstance(e, IndexError) and e.__context__ else e
                reason = f"could not be reached ({type(cause).__name__})"
                if attempt == 2 or type(cause).__name__ not in _STALE_CONNECTION:
                    break
        logger.warning("MedMesh policy decision %s refused: the policy module %s", check, reason)
        return Answer(
            allow=False,
            errcode="M_FORBIDDEN",
            error=(
                f"Refused because MedMesh's policy service {reason}, so this could not be "
                "checked; try again shortly"
            ),
        )

    async def _post(self, check: str, body: dict[str, Any]) -> Answer:
        answer = await self._api.http_client.post_json_get_json(
            f"{self._config.decision_url}/_medmesh/decide/v1/{check}",
            body,
            headers={b"Authorization": [f"Bearer {self._config.token}".encode("ascii")]},
        )
        if not isinstance(answer, dict) or not isinstance(answer.get("allow"), bool):
            raise ValueError(f"unexpected decision answer: {json.dumps(answer)[:200]}")
        config = answer.get("config")
        if config is not None and not isinstance(config, dict):
            raise ValueError("unexpected decision answer: config is not an object")
        return Answer(
            allow=answer["allow"],
            errcode=str(answer.get("errcode", "M_FORBIDDEN")),
            error=str(answer.get("error", "Refused by this organisation's policy")),
            config=config,
        )
