"""The shapes of what Slack and Teams send, as far as mitigate reads them: checked after the signature
or token verified and before Bolt, botbuilder or a listener touches the body, so a malformed request
is a 422 naming the field (and these models document the chat doors in the OpenAPI schema).

Extra fields are allowed: Slack and Teams add fields often; only what the listeners use is required.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

_ID = Field(max_length=255)


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class SlackMessageEvent(_Open):
    """`app_mention` and `message` events (the only ones the bot listens to)."""

    type: str = Field(max_length=100)
    channel: str = _ID
    ts: str = _ID
    text: str = Field(default="", max_length=40_000)
    user: str = Field(default="", max_length=255)
    thread_ts: str | None = Field(default=None, max_length=255)
    bot_id: str | None = Field(default=None, max_length=255)
    subtype: str | None = Field(default=None, max_length=100)
    channel_type: str | None = Field(default=None, max_length=100)


class SlackEventEnvelope(_Open):
    """An Events API request: a URL verification or an event callback."""

    type: Literal["url_verification", "event_callback", "app_rate_limited"]
    challenge: str | None = Field(default=None, max_length=1000)
    team_id: str | None = Field(default=None, max_length=255)
    event: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _listened_events_are_complete(self) -> SlackEventEnvelope:
        if self.event is not None and self.event.get("type") in ("app_mention", "message"):
            SlackMessageEvent.model_validate(self.event)  # a missing channel or ts is named
        return self


class SlackCommand(_Open):
    """A slash command (form-encoded)."""

    command: str = Field(max_length=100)
    text: str = Field(default="", max_length=4000)
    user_id: str = _ID
    channel_id: str = _ID
    trigger_id: str = Field(default="", max_length=255)
    team_id: str = Field(default="", max_length=255)
    response_url: str = Field(max_length=2000, pattern=r"^https?://")  # where the answer goes


class SlackUser(_Open):
    id: str = _ID


class SlackAction(_Open):
    action_id: str = Field(max_length=255)
    value: str = Field(default="", max_length=2000)


class SlackInteraction(_Open):
    """The JSON in the `payload` field of an interactivity request (a button press)."""

    type: str = Field(max_length=100)
    user: SlackUser
    actions: list[SlackAction] = Field(default_factory=list, max_length=25)

    @model_validator(mode="after")
    def _actions_present(self) -> SlackInteraction:
        if self.type == "block_actions" and not self.actions:
            raise ValueError("a block_actions payload carries at least one action")
        return self


class TeamsAccount(_Open):
    id: str = Field(default="", max_length=1000)
    name: str | None = Field(default=None, max_length=1000)
    aadObjectId: str | None = Field(default=None, max_length=255)


class TeamsConversation(_Open):
    id: str = Field(max_length=1000)


class TeamsActivity(_Open):
    """A Bot Framework activity, as far as the bot reads it."""

    type: str = Field(max_length=100)
    id: str | None = Field(default=None, max_length=1000)
    serviceUrl: str | None = Field(default=None, max_length=2000)
    channelId: str | None = Field(default=None, max_length=255)
    text: str | None = Field(default=None, max_length=28_000)
    replyToId: str | None = Field(default=None, max_length=1000)
    from_: TeamsAccount | None = Field(default=None, alias="from")
    recipient: TeamsAccount | None = None
    conversation: TeamsConversation | None = None
    value: Any = None
