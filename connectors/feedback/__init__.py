"""``rota feedback serve``: provider callbacks in, touchpoints out.

The other half of closing the loop. A connector knows only that the provider took the
message; whether it was delivered, opened, clicked, bounced or unsubscribed from, the
provider tells later, by calling back. ``server`` is the HTTP receiver, ``signatures``
checks that a callback really comes from the provider, ``events`` maps each provider's
format to touchpoints (a pure function, tested without HTTP or Kafka).
"""
