"""A delivery as the ledger keys it, and the name a worker goes by in it."""

from __future__ import annotations

import os
import socket
import uuid
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


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
