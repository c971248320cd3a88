"""The old home of the planning stages, kept so `from commcal.plan import X` goes on working.

The stages live in their own modules now: `deliveries` (Delivery, ids, expansion x channels x
recipients, local send times), `compose` (context, rendering, Message), `check` (Message ->
problems; plan and preview results) and `validate` (every problem `commcal validate` reports).
"""

from __future__ import annotations

from commcal.check import Planned, check, iter_plan, next_occurrence, plan, problems_of
from commcal.compose import (
    PREVIEW_TOKEN,
    context,
    event_invitation,
    member_code,
    member_context,
    member_token,
    message_for,
    poll_fallback,
    pool_codes,
)
from commcal.deliveries import (
    BULK_GC_THRESHOLD,
    Delivery,
    Filters,
    Memo,
    audience_size,
    deliveries,
    delivery_id,
    fewer_collections,
    find_item,
    id_prefix,
    local_send_times,
    member_zone_instant,
    member_zones,
)
from commcal.validate import audience_problems, locale_samples, member_render_problems

__all__ = [
    "BULK_GC_THRESHOLD",
    "PREVIEW_TOKEN",
    "Delivery",
    "Filters",
    "Memo",
    "Planned",
    "audience_problems",
    "audience_size",
    "check",
    "context",
    "deliveries",
    "delivery_id",
    "event_invitation",
    "fewer_collections",
    "find_item",
    "id_prefix",
    "iter_plan",
    "local_send_times",
    "locale_samples",
    "member_code",
    "member_context",
    "member_render_problems",
    "member_token",
    "member_zone_instant",
    "member_zones",
    "message_for",
    "next_occurrence",
    "plan",
    "poll_fallback",
    "pool_codes",
    "problems_of",
]
