"""A delivery as the ledger keys it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from commcal.ledger import DueDelivery

if TYPE_CHECKING:
    from commcal.plan import Delivery


def due_delivery(delivery: Delivery) -> DueDelivery:
    return DueDelivery(
        delivery.id,
        delivery.calendar,
        delivery.item.id,
        delivery.channel,
        delivery.due,
        recipient=delivery.recipient.key if delivery.recipient else "",
    )
