"""MedMesh's Synapse module.

It holds no rules. Synapse calls it at its own decision points, which every path to the guarded
action passes (client API in every version, the state API, room upgrades, federation, appservices);
it forwards the few questions that need a decision to the MedMesh policy module and returns the
answer. No answer in time means no (fail closed). See docs/synapse-module.md.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

from twisted.internet import defer, reactor

from synapse.module_api import (
    NOT_SPAM,
    EventBase,
    ModuleApi,
    make_deferred_yieldable,
    run_in_background,
)
from synapse.module_api.errors import Codes, ConfigError

from . import remote_media

logger = logging.getLogger(__name__)

# State events whose content a room rule constrains (E2EE algorithm, join rule, history visibility).
GUARDED_STATE = frozenset({"m.room.encryption", "m.room.join_rules", "m.room.history_visibility"})

SpamResult = Union[Literal["NOT_SPAM"], tuple[Codes, dict[str, Any]]]


@dataclass(frozen=True)
class Config:
    decision_url: str
    token: str
    timeout_seconds: float


@dataclass(frozen=True)
class Answer:
    allow: bool
    errcode: str = "M_FORBIDDEN"
    error: str = ""


class MedMeshPolicy:
    def __init__(self, config: Config, api: ModuleApi):
        self._config = config
        self._api = api
        api.register_spam_checker_callbacks(
            user_may_invite=self.user_may_invite,
            federated_user_may_invite=self.federated_user_may_invite,
            user_may_create_room=self.user_may_create_room,
            user_may_join_room=self.user_may_join_room,
            user_may_publish_room=self.user_may_publish_room,
            check_event_for_spam=self.check_event_for_spam,
            user_may_send_3pid_invite=self.user_may_send_3pid_invite,
        )
        api.register_web_resource(remote_media.PATH, remote_media.RemoteMediaDelete(api))

    @staticmethod
    def parse_config(config: dict[str, Any]) -> Config:
        url = config.get("decision_url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError("medmesh_synapse: decision_url must be the policy module's http(s) URL")
        token_file = config.get("token_file")
        if not isinstance(token_file, str):
            raise ConfigError("medmesh_synapse: token_file must name the decision token's file")
        try:
            with open(token_file, encoding="utf8") as f:
                token = f.read().strip()
        except OSError as e:
            raise ConfigError(f"medmesh_synapse: cannot read token_file {token_file}: {e}")
        if not token:
            raise ConfigError(f"medmesh_synapse: token_file {token_file} is empty")
        timeout_ms = config.get("timeout_ms", 2000)
        if not isinstance(timeout_ms, int) or isinstance(timeout_ms, bool) or timeout_ms <= 0:
            raise ConfigError("medmesh_synapse: timeout_ms must be a positive integer")
        return Config(url.rstrip("/"), token, timeout_ms / 1000)

    # --- spam-checker callbacks -------------------------------------------------------------

    async def user_may_invite(self, inviter: str, invitee: str, room_id: str) -> SpamResult:
        answer = await self._ask(
            "invite", {"inviter": inviter, "invitee": invitee, "room_id": room_id, "via": "local"}
        )
        return _spam_result(answer)

    async def federated_user_may_invite(self, event: EventBase) -> SpamResult:
        answer = await self._ask(
            "invite",
            {
                "inviter": event.sender,
                "invitee": event.state_key,
                "room_id": event.room_id,
                "via": "federation",
            },
        )
        return _spam_result(answer)

    async def user_may_create_room(self, user_id: str, room_config: dict[str, Any]) -> SpamResult:
        answer = await self._ask("create_room", {"user_id": user_id, "config": room_config})
        return _spam_result(answer)

    async def user_may_join_room(self, user_id: str, room_id: str, is_invited: bool) -> SpamResult:
        answer = await self._ask(
            "join", {"user_id": user_id, "room_id": room_id, "is_invited": is_invited}
        )
        return _spam_result(answer)

    async def user_may_publish_room(self, user_id: str, room_id: str) -> SpamResult:
        answer = await self._ask("publish", {"user_id": user_id, "room_id": room_id})
        return _spam_result(answer)

    async def user_may_send_3pid_invite(
        self, inviter: str, medium: str, address: str, room_id: str
    ) -> SpamResult:
        # The address is not sent: the policy module needs only to know that one was asked for.
        answer = await self._ask("invite_3pid", {"inviter": inviter, "room_id": room_id})
        return _spam_result(answer)

    # --- events ---------------------------------------------------------------------------------

    async def check_event_for_spam(self, event: EventBase) -> SpamResult:
        # Called for every event a client sends (state API included) and every PDU other servers
        # send, so it filters here and asks only for the few that need a decision. (Not
        # check_event_allowed: Synapse loads the room's whole state before every call to it, a
        # cost on every message; and it never sees other servers' PDUs.) A refused PDU from
        # another server is soft-failed: never in the room's current state, never shown.
        question = self._question(event)
        if question is None:
            return NOT_SPAM
        answer = await self._ask(*question)
        if not answer.allow and not self._api.is_mine(event.sender):
            logger.info("refused a %s event from %s: %s", event.type, event.sender, answer.error)
        return _spam_result(answer)

    def _question(self, event: EventBase) -> Optional[tuple[str, dict[str, Any]]]:
        if not event.is_state():
            return None
        if event.type in GUARDED_STATE:
            return "state_event", {
                "type": event.type,
                "state_key": event.state_key,
                "sender": event.sender,
                "room_id": event.room_id,
                "content": dict(event.content),
            }
        # Local invites were decided in user_may_invite; invites other servers send over /invite
        # in federated_user_may_invite. What is left: an invite a server puts inside /send.
        if (
            event.type == "m.room.member"
            and event.content.get("membership") == "invite"
            and not self._api.is_mine(event.sender)
        ):
            return "invite", {
                "inviter": event.sender,
                "invitee": event.state_key,
                "room_id": event.room_id,
                "via": "federation",
            }
        return None

    # --- the call -----------------------------------------------------------------------------

    async def _ask(self, check: str, body: dict[str, Any]) -> Answer:
        try:
            call = run_in_background(self._post, check, body)
            call.addTimeout(self._config.timeout_seconds, reactor)
            return await make_deferred_yieldable(call)
        except defer.TimeoutError:
            reason = "did not answer in time"
        except Exception as e:  # noqa: BLE001 - every failure is a refusal (fail closed)
            reason = f"could not be reached ({type(e).__name__})"
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
        return Answer(
            allow=answer["allow"],
            errcode=str(answer.get("errcode", "M_FORBIDDEN")),
            error=str(answer.get("error", "Refused by this organisation's policy")),
        )


def _errcode(errcode: str) -> Codes:
    try:
        return Codes(errcode)
    except ValueError:
        return Codes.FORBIDDEN


def _spam_result(answer: Answer) -> SpamResult:
    if answer.allow:
        return NOT_SPAM
    # Synapse merges these fields into its error response: "error" replaces its generic sentence.
    return _errcode(answer.errcode), {"error": answer.error}
