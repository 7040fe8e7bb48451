"""Interaction responses in the fake Discord: the callback endpoint and the interaction webhook (followups, edits)."""

from __future__ import annotations

import re
import time
from typing import Any

from aiohttp import web

from .gateway import Gateway
from .interactions import ALLOWED_CALLBACKS, FakeInteraction, InteractionSender
from .messages import SETTABLE_MESSAGE_FLAGS, Messages, validate_message_body
from .model import FLAG_EPHEMERAL, FLAG_LOADING, JSON, RestError, UploadedFile, form_error
from .rest import Handler, RecordedRequest, json_response, no_content
from .world import DiscordWorld


class Responses:
    """POST /interactions/{id}/{token}/callback and /webhooks/{app}/{token}[/messages/...]."""

    def __init__(
        self, world: DiscordWorld, gateway: Gateway, sender: InteractionSender, messages: Messages
    ) -> None:
        self.world = world
        self.gateway = gateway
        self.sender = sender
        self.messages = messages

    def routes(self) -> list[tuple[str, str, Handler]]:
        hook = r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)"
        msg = hook + r"/messages/(?P<mid>@original|\d+)"
        return [
            ("POST", r"/interactions/(?P<iid>\d+)/(?P<token>[^/]+)/callback", self._callback),
            ("POST", hook, self._followup),
            ("GET", msg, self._get_webhook_message),
            ("PATCH", msg, self._edit_webhook_message),
            ("DELETE", msg, self._delete_webhook_message),
        ]

    def _metadata(self, fi: FakeInteraction, original_id: int | None = None) -> JSON:
        meta: JSON = {
            "id": str(fi.id),
            "type": fi.type,
            "user": self.world.user_payload(fi.user_id),
            "authorizing_integration_owners": fi.payload["authorizing_integration_owners"],
            "name": fi.name,
        }
        if fi.type == 2:
            meta["command_type"] = int(fi.payload["data"].get("type", 1))
        if fi.source_message_id is not None:
            meta["interacted_message_id"] = str(fi.source_message_id)
        if original_id is not None:
            meta["original_response_message_id"] = str(original_id)
        return meta

    async def _interaction_message(
        self,
        fi: FakeInteraction,
        data: JSON,
        files: list[UploadedFile],
        *,
        loading: bool,
        original_id: int | None = None,
    ) -> JSON:
        flags = int(data.get("flags") or 0)
        ephemeral = bool(flags & FLAG_EPHEMERAL)
        flags &= SETTABLE_MESSAGE_FLAGS | FLAG_EPHEMERAL
        if loading:
            flags |= FLAG_LOADING
        mtype = 0
        if fi.type == 2:
            mtype = 20 if int(fi.payload["data"].get("type", 1)) == 1 else 23
        msg = self.world.build_message(
            fi.channel_id,
            self.world.bot_user_id,
            "" if loading else str(data.get("content") or ""),
            embeds=None if loading else data.get("embeds"),
            attachments=None
            if loading
            else self.messages.build_attachments(data, files, fi.channel_id, None, voice_metadata=False),
            components=None if loading else data.get("components"),
            flags=flags,
            type_=mtype,
            allowed_mentions=data.get("allowed_mentions"),
            webhook_id=self.world.application_id,
            extra={
                "application_id": str(self.world.application_id),
                "interaction_metadata": self._metadata(fi, original_id),
                "interaction": {
                    "id": str(fi.id),
                    "type": fi.type,
                    "name": fi.name,
                    "user": self.world.user_payload(fi.user_id),
                },
            },
        )
        if ephemeral:
            self.world.message_index[int(msg["id"])] = msg
        else:
            self.world.store_message(msg)
            await self.gateway.dispatch_message("MESSAGE_CREATE", msg)
        return msg

    def _check_type(self, fi: FakeInteraction, cb_type: Any) -> int:
        if not isinstance(cb_type, int) or cb_type not in ALLOWED_CALLBACKS.get(fi.type, set()):
            raise form_error(
                "type",
                "INTERACTION_CALLBACK_TYPE_INVALID",
                f"Invalid callback type {cb_type} for interaction type {fi.type}",
            )
        return cb_type

    async def _callback(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        fi = self.sender.interactions.get(int(m["iid"]))
        if fi is None or fi.token != m["token"]:
            raise RestError(404, 10062, "Unknown interaction")
        if fi.callback_type is not None:
            raise RestError(400, 40060, "Interaction has already been acknowledged.")
        if time.monotonic() - fi.created > self.sender.interaction_deadline:
            raise RestError(404, 10062, "Unknown interaction")
        body: JSON = rec.json or {}
        cb_type = self._check_type(fi, body.get("type"))
        data: JSON = body.get("data") or {}
        msg: JSON | None = None
        if cb_type == 4:
            validate_message_body(data, rec.files, upload_limit=self.world.upload_limit, require_content=True)
            msg = await self._interaction_message(fi, data, rec.files, loading=False)
            self.messages.record_sent(msg, "interaction", data, rec.files, fi.id)
            fi.original = msg
        elif cb_type == 5:
            msg = await self._interaction_message(fi, data, [], loading=True)
            self.messages.record_sent(msg, "interaction", data, [], fi.id)
            fi.original = msg
        elif cb_type in (6, 7):
            msg = self.world.message_index.get(fi.source_message_id or 0)
            if msg is None:
                raise RestError(400, 10008, "Unknown Message")
            if cb_type == 7:
                self.messages.apply_edit(msg, data, rec.files)
                if not int(msg.get("flags", 0)) & FLAG_EPHEMERAL:
                    await self.gateway.dispatch_message("MESSAGE_UPDATE", msg)
            fi.original = msg
        elif cb_type == 8:
            fi.autocomplete_choices = list(data.get("choices") or [])
        elif cb_type == 9:
            if not data.get("custom_id") or not data.get("title") or not data.get("components"):
                raise form_error("data", "MODAL_INVALID", "A modal needs custom_id, title and components")
            fi.modal = data
        fi.callback_type = cb_type
        fi.record("callback", body, rec.files, type=cb_type)
        if rec.query.get("with_response") not in ("1", "true", "True"):
            return no_content()
        flags = int(msg.get("flags", 0)) if msg is not None else 0
        resource: JSON = {"type": cb_type}
        if msg is not None and cb_type in (4, 5, 7):
            resource["message"] = msg
        return json_response(
            {
                "interaction": {
                    "id": str(fi.id),
                    "type": fi.type,
                    "activity_instance_id": None,
                    "response_message_id": msg["id"] if msg is not None else None,
                    "response_message_loading": cb_type == 5,
                    "response_message_ephemeral": bool(flags & FLAG_EPHEMERAL),
                },
                "resource": resource,
            }
        )

    def _webhook_interaction(self, m: re.Match[str]) -> FakeInteraction:
        fi = self.sender.by_token.get(m["token"])
        if int(m["app"]) != self.world.application_id or fi is None:
            raise RestError(404, 10015, "Unknown Webhook")
        if time.monotonic() - fi.created > self.sender.token_lifetime:
            raise RestError(401, 50027, "Invalid Webhook Token")
        if fi.callback_type is None:
            raise RestError(404, 10015, "Unknown Webhook")
        return fi

    def _webhook_target(self, fi: FakeInteraction, mid: str) -> JSON:
        if mid == "@original":
            if fi.original is None:
                raise RestError(404, 10008, "Unknown Message")
            return fi.original
        wanted = int(mid)
        candidates = [fi.original, *fi.followups]
        for msg in candidates:
            if msg is not None and int(msg["id"]) == wanted and wanted in self.world.message_index:
                return msg
        raise RestError(404, 10008, "Unknown Message")

    async def _followup(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        fi = self._webhook_interaction(m)
        body: JSON = rec.json or {}
        validate_message_body(body, rec.files, upload_limit=self.world.upload_limit, require_content=True)
        if fi.callback_type == 5 and fi.loading and fi.original is not None:
            # Discord: the first followup after a deferred reply replaces the "thinking" message.
            msg = self.messages.apply_edit(fi.original, {**body, "flags": None}, rec.files)
            fi.record("followup", body, rec.files, message_id=int(msg["id"]), edited_original=True)
            if not int(msg.get("flags", 0)) & FLAG_EPHEMERAL:
                await self.gateway.dispatch_message("MESSAGE_UPDATE", msg)
        else:
            original_id = int(fi.original["id"]) if fi.original is not None else None
            msg = await self._interaction_message(fi, body, rec.files, loading=False, original_id=original_id)
            fi.followups.append(msg)
            self.messages.record_sent(msg, "followup", body, rec.files, fi.id)
            fi.record("followup", body, rec.files, message_id=int(msg["id"]))
        if rec.query.get("wait") in ("1", "true", "True"):
            return json_response(msg)
        return no_content()

    async def _get_webhook_message(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        fi = self._webhook_interaction(m)
        return json_response(self._webhook_target(fi, m["mid"]))

    async def _edit_webhook_message(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        fi = self._webhook_interaction(m)
        msg = self._webhook_target(fi, m["mid"])
        self.messages.apply_edit(msg, rec.json or {}, rec.files)
        is_original = msg is fi.original
        fi.record(
            "edit_original" if is_original else "edit_followup",
            rec.json,
            rec.files,
            message_id=int(msg["id"]),
        )
        if not int(msg.get("flags", 0)) & FLAG_EPHEMERAL:
            await self.gateway.dispatch_message("MESSAGE_UPDATE", msg)
        return json_response(msg)

    async def _delete_webhook_message(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        fi = self._webhook_interaction(m)
        msg = self._webhook_target(fi, m["mid"])
        is_original = msg is fi.original
        await self.messages.delete_stored(msg)
        if is_original:
            fi.original = None
        else:
            fi.followups = [f for f in fi.followups if f is not msg]
        fi.record(
            "delete_original" if is_original else "delete_followup", None, [], message_id=int(msg["id"])
        )
        return no_content()
