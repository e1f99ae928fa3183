"""Remote media copies by age: a mechanism the retention sweep calls, no rules.

Synapse purges its cache of other servers' media by last access only (`purge_media_cache`,
`media_retention.remote_media_lifetime`), so a copy that someone keeps looking at outlives the
original its own server deleted. Synapse has no admin API to delete a remote copy by ID or by the
time it was fetched; this resource does both, for server admins (the policy module's admin
session), with Synapse's own storage calls. See docs/retention.md.

    POST /_medmesh/synapse/v1/remote_media/delete
    {"fetched_before_ts": <ms, optional>, "media": ["mxc://origin/id", ...] (optional)}
    -> {"deleted": <count>}
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from typing import TYPE_CHECKING, Any

from synapse.api.errors import Codes, SynapseError
from synapse.http.servlet import parse_json_object_from_request
from synapse.module_api import DirectServeJsonResource, ModuleApi

if TYPE_CHECKING:
    from synapse.http.site import SynapseRequest

logger = logging.getLogger(__name__)

PATH = "/_medmesh/synapse/v1/remote_media/delete"
MAX_IDS = 10_000


class RemoteMediaDelete(DirectServeJsonResource):
    def __init__(self, api: ModuleApi):
        super().__init__()
        self._api = api
        # Synapse's own media store and repository (no module API exposes them; pinned version).
        hs = api._hs  # noqa: SLF001
        self._store = hs.get_datastores().main
        self._repo = hs.get_media_repository() if hs.config.media.can_load_media_repo else None

    async def _async_render_POST(self, request: "SynapseRequest") -> tuple[int, dict[str, Any]]:
        requester = await self._api.get_user_by_req(request)
        if not await self._api.is_user_admin(requester.user.to_string()):
            raise SynapseError(403, "Only server admins may delete media copies", Codes.FORBIDDEN)
        if self._repo is None:
            raise SynapseError(400, "This process does not hold the media repository", Codes.UNKNOWN)
        body = parse_json_object_from_request(request)
        before = body.get("fetched_before_ts")
        media = body.get("media", [])
        if before is not None and (not isinstance(before, int) or isinstance(before, bool)):
            raise SynapseError(400, "fetched_before_ts must be a timestamp in ms", Codes.INVALID_PARAM)
        if not isinstance(media, list) or len(media) > MAX_IDS or not all(isinstance(m, str) for m in media):
            raise SynapseError(400, f"media must be a list of at most {MAX_IDS} mxc URIs", Codes.INVALID_PARAM)

        targets: dict[tuple[str, str], str] = {}
        for uri in media:
            origin, _, media_id = uri.removeprefix("mxc://").partition("/")
            if not uri.startswith("mxc://") or not origin or not media_id or "/" in media_id:
                raise SynapseError(400, f"not an mxc URI: {uri[:100]}", Codes.INVALID_PARAM)
            if origin == self._api.server_name:
                continue  # this server's own media: the media admin API deletes those
            cached = await self._store.get_cached_remote_media(origin, media_id)
            if cached is not None:
                targets[(origin, media_id)] = cached.filesystem_id
        if before is not None:
            # Quarantined copies stay, as in Synapse's own purge: they are kept for moderation.
            rows = await self._store.db_pool.execute(
                "medmesh_remote_media_fetched_before",
                "SELECT media_origin, media_id, filesystem_id FROM remote_media_cache"
                " WHERE created_ts < ? AND quarantined_by IS NULL",
                before,
            )
            for origin, media_id, file_id in rows:
                targets[(origin, media_id)] = file_id

        deleted = 0
        for (origin, media_id), file_id in targets.items():
            if await self._delete(origin, media_id, file_id):
                deleted += 1
        if deleted:
            logger.info("deleted %d copies of other servers' media", deleted)
        return 200, {"deleted": deleted}

    async def _delete(self, origin: str, media_id: str, file_id: str) -> bool:
        repo = self._repo
        assert repo is not None
        async with repo.remote_media_linearizer.queue((origin, media_id)):
            path = repo.filepaths.remote_media_filepath(origin, file_id)
            try:
                os.remove(path)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    logger.warning("could not remove %s: %s", path, e)
                    return False
            shutil.rmtree(repo.filepaths.remote_media_thumbnail_dir(origin, file_id), ignore_errors=True)
            await self._store.delete_remote_media(origin, media_id)
        return True
