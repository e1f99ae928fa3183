"""MedMesh's OIDC user mapping provider for Synapse's single sign-on.

User names and display names come from Synapse's own Jinja mapping provider (templates the
generator writes). On every SSO login this provider also forwards the claims MedMesh uses (the
person's name, the registration number; only those named in `forward_claims`) with the identity
provider's subject to the policy module (`sso_claims`), which stores them and checks the
registration against the registry once Synapse reports the completed login. It holds no rules:
a refusal, or no answer in time, stops the login (fail closed). See docs/identity.md.

    user_mapping_provider:
      module: medmesh_synapse.oidc.MedMeshOidcMapping
      config:
        decision_url: http://127.0.0.1:9100
        token_file: /etc/medmesh/secrets/decision-token
        timeout_ms: 2000
        idp_id: oidc-hospital-a
        forward_claims: [name, big_number]
        localpart_template: '{{ (user["preferred_username"] or "") | localpart_from_email }}'
        display_name_template: '{{ (user["name"] or "") }}'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from authlib.oidc.core import UserInfo

# Synapse's default (Jinja) provider: the documented mapping-provider contract, reused as it is.
from synapse.handlers.oidc import JinjaOidcMappingConfig, JinjaOidcMappingProvider, Token
from synapse.module_api import ModuleApi
from synapse.module_api.errors import ConfigError, SynapseError

from medmesh_synapse.decisions import DecisionClient, DecisionConfig, parse_decision_config

OWN_KEYS = ("decision_url", "token_file", "timeout_ms", "idp_id", "forward_claims")


@dataclass(frozen=True)
class MappingConfig:
    decisions: DecisionConfig
    idp_id: str
    forward_claims: tuple[str, ...]
    jinja: JinjaOidcMappingConfig


class MedMeshOidcMapping:
    def __init__(self, config: MappingConfig, module_api: ModuleApi):
        self._config = config
        self._jinja = JinjaOidcMappingProvider(config.jinja, module_api)
        self._decisions = DecisionClient(config.decisions, module_api)

    @staticmethod
    def parse_config(config: dict[str, Any]) -> MappingConfig:
        who = "medmesh_synapse.oidc"
        idp_id = config.get("idp_id")
        if not isinstance(idp_id, str) or not idp_id:
            raise ConfigError(f"{who}: idp_id must be Synapse's idp_id of this provider")
        claims = config.get("forward_claims", [])
        if not isinstance(claims, list) or not all(isinstance(c, str) and c for c in claims):
            raise ConfigError(f"{who}: forward_claims must be a list of claim names")
        jinja = {k: v for k, v in config.items() if k not in OWN_KEYS}
        return MappingConfig(
            decisions=parse_decision_config(config, who),
            idp_id=idp_id,
            forward_claims=tuple(claims),
            jinja=JinjaOidcMappingProvider.parse_config(jinja),
        )

    def get_remote_user_id(self, userinfo: UserInfo) -> str:
        return self._jinja.get_remote_user_id(userinfo)

    async def map_user_attributes(
        self, userinfo: UserInfo, token: Token, failures: int
    ) -> Any:
        return await self._jinja.map_user_attributes(userinfo, token, failures)

    async def get_extra_attributes(self, userinfo: UserInfo, token: Token) -> dict[str, Any]:
        # Synapse calls this on every OIDC login, before it registers or finds the account.
        claims = {c: userinfo[c] for c in self._config.forward_claims if c in userinfo}
        answer = await self._decisions.ask(
            "sso_claims",
            {
                "idp_id": self._config.idp_id,
                "subject": self.get_remote_user_id(userinfo),
                "claims": claims,
            },
        )
        if not answer.allow:
            raise SynapseError(403, answer.error)
        # Nothing for the client's login response: the claims stay with MedMesh.
        return {}
