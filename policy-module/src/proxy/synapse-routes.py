"""Lists the HTTP routes the installed Synapse serves on MedMesh's client and federation listeners.

Run with the pinned Synapse's interpreter (deploy/.venv/bin/python). It registers Synapse's own
servlets (client, media, federation, key) into a recorder instead of a web server, with a real
Synapse config carrying the settings of deploy/src/synapse/homeserver-config.ts that decide which
servlets exist (authenticated media, no URL previews, no MAS, MSC3814 the only experimental feature). A JSON
object as the first argument is merged over them: the endpoint test passes an organisation's
single sign-on settings (oidc_providers) to see the SSO servlets Synapse then adds.
The handlers are never called, so the homeserver object they are built with is a stand-in.

Output (stdout): JSON {"synapse": version, "routes": [{"resource", "method", "pattern",
"servlet", "samples"}]}, where `samples` are concrete paths the pattern matches, one per
alternative (API version aliases, optional segments). The policy proxy's endpoint test
(endpoints.test.ts) checks its table against these. This file holds no MedMesh rules.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
import tempfile
from typing import Any, Iterable, Pattern
from unittest.mock import MagicMock

try:  # Python 3.11+
    import re._parser as sre_parse  # type: ignore[import-not-found]
    import re._constants as sre_constants  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    import sre_constants  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]

import synapse
from synapse.config.homeserver import HomeServerConfig

# The settings of MedMesh's homeserver.yaml that change which servlets Synapse registers.
MEDMESH_SETTINGS: dict[str, Any] = {
    "enable_registration": False,
    "enable_authenticated_media": True,
    "url_preview_enabled": False,
    "require_auth_for_profile_requests": True,
    "limit_profile_requests_to_users_who_share_rooms": True,
    "presence": {"enabled": False},
    "serve_server_wellknown": False,
    "trusted_key_servers": [],
    "suppress_key_server_warning": True,
    "experimental_features": {"msc3814_enabled": True},
}


class Recorder:
    """Stands in for Synapse's JsonResource: keeps what servlets register."""

    def __init__(self, resource: str) -> None:
        self.resource = resource
        self.routes: list[dict[str, Any]] = []

    def register_paths(
        self, method: str, path_patterns: Iterable[Pattern[str]], callback: Any, servlet_classname: str
    ) -> None:
        for p in path_patterns:
            self.routes.append(
                {"resource": self.resource, "method": method, "pattern": p.pattern, "servlet": servlet_classname}
            )


def load_config(extra: dict[str, Any], work: str) -> HomeServerConfig:
    cfg: dict[str, Any] = {
        "server_name": "example.org",
        "report_stats": False,
        "signing_key_path": os.path.join(work, "signing.key"),
        "media_store_path": os.path.join(work, "media"),
        "database": {"name": "sqlite3", "args": {"database": ":memory:"}},
        "listeners": [],
        "macaroon_secret_key": "unused",
        "form_secret": "unused",
        "registration_shared_secret": "unused",
        **MEDMESH_SETTINGS,
        **extra,
    }
    config = HomeServerConfig()
    stdout = sys.stdout
    sys.stdout = sys.stderr  # key generation talks on stdout, which carries the JSON
    try:
        config.generate_missing_files(cfg, work)
        config.parse_config_dict(cfg, work, work)
    finally:
        sys.stdout = stdout
    return config


def enumerate_routes(config: HomeServerConfig) -> list[dict[str, Any]]:
    from synapse.federation.transport.server import register_servlets as register_federation
    from synapse.rest import ClientRestResource
    from synapse.rest.key.v2 import KeyResource
    from synapse.rest.media.media_repository_resource import MediaRepositoryResource

    hs = MagicMock()
    hs.config = config
    hs.hostname = config.server.server_name
    # No application services are registered here: the appservice proxy routes (MSC4512) are
    # per-appservice and off in MedMesh's config anyway.
    hs.get_datastores.return_value.main.get_app_services.return_value = []

    client = Recorder("client")
    groups = ["client"]
    if config.media.can_load_media_repo:
        # What ClientRestResource's constructor does: authenticated media (/_matrix/client/v1/media).
        from synapse.rest import SERVLET_GROUPS
        from synapse.rest.client import media as client_media

        SERVLET_GROUPS["media"] = (client_media.register_servlets,)
        groups.append("media")
    ClientRestResource.register_servlets(client, hs, groups)
    media = Recorder("media")
    MediaRepositoryResource.register_servlets(media, hs)
    federation = Recorder("federation")
    register_federation(hs, federation, authenticator=MagicMock(), ratelimiter=MagicMock())
    key = Recorder("key")
    KeyResource.register_servlets(key, hs)

    routes = client.routes + media.routes + federation.routes + key.routes
    for r in routes:
        r["samples"] = sorted(set(samples(r["pattern"])))
    return routes


# Stand-ins for path parameters: distinct from every literal segment Synapse uses.
PARAM_CHAR = "x"


def samples(pattern: str) -> list[str]:
    """Concrete strings matching `pattern`, one for each choice of its alternatives and options."""
    out = [s for s in expand(sre_parse.parse(pattern)) if re.match(pattern, s)]
    if not out:
        raise ValueError(f"no sample path for {pattern}")
    return out


def expand(parsed: Any) -> list[str]:
    results = [""]
    for op, av in parsed:
        results = [a + b for a in results for b in expand_node(op, av)]
    return results


def expand_node(op: Any, av: Any) -> list[str]:
    c = sre_constants
    if op == c.LITERAL:
        return [chr(av)]
    if op == c.NOT_LITERAL:
        return [PARAM_CHAR]
    if op == c.ANY:
        return ["."]  # an unescaped dot in a path, as in "org.matrix.simplified_msc3575"
    if op == c.AT:
        return [""]
    if op == c.IN:
        return [class_member(av)]
    if op == c.SUBPATTERN:
        return expand(av[-1])
    if op == c.BRANCH:
        return list(itertools.chain.from_iterable(expand(b) for b in av[1]))
    if op in (c.MAX_REPEAT, c.MIN_REPEAT):
        low, high, sub = av
        # `.*` is a parameter (the rest of the path), not a row of dots.
        inner = [PARAM_CHAR] if [op for op, _ in sub] == [c.ANY] else expand(sub)
        # An optional part (`?`) gives both forms; a repeated one (a parameter) one non-empty form,
        # since empty path segments never reach Synapse through the proxy.
        counts = [0, 1] if (low, high) == (0, 1) else [max(low, 1)]
        return ["".join(p) for n in counts for p in itertools.product(inner, repeat=n)]
    if op in (c.ASSERT, c.ASSERT_NOT):
        return [""]
    if op == c.CATEGORY:
        return ["1" if av == c.CATEGORY_DIGIT else "a"]
    raise ValueError(f"unsupported regex construct {op}")


def class_member(items: Any) -> str:
    c = sre_constants
    negated = any(op == c.NEGATE for op, _ in items)
    if negated:
        return PARAM_CHAR
    for op, av in items:
        if op == c.LITERAL:
            return chr(av)
        if op == c.RANGE:
            return chr(av[0])
        if op == c.CATEGORY:
            return "1" if av == c.CATEGORY_DIGIT else "a"
    raise ValueError(f"unsupported character class {items}")


def main() -> None:
    extra: dict[str, Any] = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    with tempfile.TemporaryDirectory(prefix="medmesh-routes-") as work:
        routes = enumerate_routes(load_config(extra, work))
    json.dump({"synapse": synapse.__version__, "routes": routes}, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
