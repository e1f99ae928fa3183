"""MedMesh's Synapse module.

It holds no rules. Synapse calls it at its own decision points, which every path to the guarded
action passes (client API in every version, the state API, room upgrades, federation, appservices);
it forwards the few questions that need a decision to the MedMesh policy module and returns the
answer. No answer in time means no (fail closed). See docs/synapse-module.md.
"""

from __future__ import annotations

import logging
from typing import AbstractSet, Any, Literal, Optional, Union

from synapse.module_api import NOT_SPAM, EventBase, ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from medmesh_synapse.decisions import (
    Answer,
    DecisionClient,
    DecisionConfig,
    parse_decision_config,
)

from . import remote_media

logger = logging.getLogger(__name__)

# State events whose content a room rule constrains (E2EE algorithm, join rule, history visibility,
# the room's listing in the group directory).
GUARDED_STATE = frozenset(
    {"m.room.encryption", "m.room.join_rules", "m.room.history_visibility", "org.medmesh.group"}
)

SpamResult = Union[Literal["NOT_SPAM"], tuple[Codes, dict[str, Any]]]

# The module config is the decision API's (decisions.py).
Config = DecisionConfig


class MedMeshPolicy:
    def __init__(self, config: Config, api: ModuleApi):
        self._api = api
        self._decisions = DecisionClient(config, api)
        self._room_servers = config.room_servers
        # Single sign-on: a completed SSO login is reported, so that MedMesh learns which account
        # the identity provider's subject is (Synapse's external_ids). Other logins are not.
        api.register_account_validity_callbacks(on_user_login=self.on_user_login)
        api.register_spam_checker_callbacks(
            user_may_invite=self.user_may_invite,
            federated_user_may_invite=self.federated_user_may_invite,
            user_may_create_room=self.user_may_create_room,
            user_may_join_room=self.user_may_join_room,
            user_may_publish_room=self.user_may_publish_room,
            check_event_for_spam=self.check_event_for_spam,
            user_may_send_3pid_invite=self.user_may_send_3pid_invite,
        )
        # A deactivated account loses its verification, whatever the path (its own request, the
        # admin API, the console); Synapse runs this on the main process after every change.
        third_party: dict[str, Any] = {
            "on_user_deactivation_status_changed": self.on_user_deactivation_status_changed
        }
        # Before Synapse builds a new room: the organisation's profile completes the request
        # (TI-M's room type and defaults); user_may_create_room then decides on the result.
        # Asked only where the generator says the profile has defaults (room_defaults: true).
        if config.room_defaults:
            third_party["on_create_room"] = self.on_create_room
        api.register_third_party_rules_callbacks(**third_party)
        api.register_web_resource(remote_media.PATH, remote_media.RemoteMediaDelete(api))

    @staticmethod
    def parse_config(config: dict[str, Any]) -> Config:
        return parse_decision_config(config)

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

    async def on_create_room(
        self, requester: Any, request_content: dict[str, Any], is_requester_admin: bool
    ) -> None:
        user_id = requester.user.to_string()
        answer = await self._ask("room_defaults", {"user_id": user_id, "config": request_content})
        if not answer.allow:
            raise SynapseError(403, answer.error, _errcode(answer.errcode))
        if answer.config is not None:
            request_content.clear()
            request_content.update(answer.config)

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
        question = await self._question(event)
        if question is None:
            return NOT_SPAM
        answer = await self._ask(*question)
        if not answer.allow and not self._api.is_mine(event.sender):
            logger.info("refused a %s event from %s: %s", event.type, event.sender, answer.error)
        return _spam_result(answer)

    async def _question(self, event: EventBase) -> Optional[tuple[str, dict[str, Any]]]:
        if not event.is_state():
            return await self._message_question(event)
        if event.type in GUARDED_STATE:
            question: dict[str, Any] = {
                "type": event.type,
                "state_key": event.state_key,
                "sender": event.sender,
                "room_id": event.room_id,
                "content": dict(event.content),
            }
            if event.type in ("m.room.join_rules", "m.room.encryption"):
                question.update(await self._room_facts(event.room_id))
            return "state_event", question
        if event.type != "m.room.member":
            return None
        membership = event.content.get("membership")
        # A knock, local or from another server (send_knock or /send), and another server's join
        # (send_join or /send): who may ask to join and join a group. Local joins were decided
        # in user_may_join_room.
        if membership == "knock" or (membership == "join" and not self._api.is_mine(event.sender)):
            return "join", {
                "user_id": event.state_key,
                "room_id": event.room_id,
                "is_invited": False,
                "membership": membership,
            }
        # Local invites were decided in user_may_invite; invites other servers send over /invite
        # in federated_user_may_invite. What is left: an invite a server puts inside /send.
        if membership == "invite" and not self._api.is_mine(event.sender):
            return "invite", {
                "inviter": event.sender,
                "invitee": event.state_key,
                "room_id": event.room_id,
                "via": "federation",
            }
        return None

    async def _room_facts(self, room_id: str) -> dict[str, Any]:
        # Facts, not rules: whether the room federates and is encrypted (a TI-M public room is
        # neither). A room Synapse does not know yet sends neither; the policy module decides.
        state = await self._api.get_room_state(
            room_id, [("m.room.create", ""), ("m.room.encryption", "")]
        )
        create = state.get(("m.room.create", ""))
        if create is None:
            return {}
        return {
            "room_federates": create.content.get("m.federate", True) is not False,
            "room_encrypted": ("m.room.encryption", "") in state,
        }

    async def _message_question(self, event: EventBase) -> Optional[tuple[str, dict[str, Any]]]:
        # TI-M (room_servers: true): a local user's message into a room where another server has a
        # member is refused when that server is off the trust list (a 403 to the sender rather than
        # a message that silently never arrives). The room's servers come from Synapse's cached
        # get_current_hosts_in_room; a room of local members only causes no call. A redaction only
        # removes content and stays possible.
        if not self._room_servers or event.type == "m.room.redaction":
            return None
        if not self._api.is_mine(event.sender):
            return None
        hosts = await _room_hosts(self._api, event.room_id)
        servers = sorted(h for h in hosts if h != self._api.server_name)
        if not servers:
            return None
        return "message", {"sender": event.sender, "room_id": event.room_id, "servers": servers}

    # --- logins -------------------------------------------------------------------------------

    async def on_user_login(
        self, user_id: str, auth_provider_type: Optional[str], auth_provider_id: Optional[str]
    ) -> None:
        # Called after every login; only a completed SSO login (before its login token reaches
        # the browser) is a question. A refusal, or no answer, stops that login (fail closed).
        if auth_provider_type != "m.login.sso" or auth_provider_id is None:
            return
        answer = await self._ask("sso_login", {"user_id": user_id, "idp_id": auth_provider_id})
        if not answer.allow:
            raise SynapseError(403, answer.error, _errcode(answer.errcode))

    # --- accounts -----------------------------------------------------------------------------

    async def on_user_deactivation_status_changed(
        self, user_id: str, deactivated: bool, by_admin: bool
    ) -> None:
        # A report: the change is made whatever the answer. One that does not arrive (the policy
        # module down) is found by its next re-verification run.
        answer = await self._ask(
            "account_status", {"user_id": user_id, "deactivated": deactivated, "by_admin": by_admin}
        )
        if not answer.allow:
            logger.warning("the policy module did not take the report on %s: %s", user_id, answer.error)

    # --- the call -----------------------------------------------------------------------------

    async def _ask(self, check: str, body: dict[str, Any]) -> Answer:
        return await self._decisions.ask(check, body)


async def _room_hosts(api: ModuleApi, room_id: str) -> AbstractSet[str]:
    # The ModuleApi has no public call for the servers in a room; its store has Synapse's cached
    # one (the joined members' servers, from the current state), on the main process and workers.
    return await api._store.get_current_hosts_in_room(room_id)


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
