"""Channel connectors: deliver next-best-actions and report outcomes.

``base`` is the contract and ``runner`` the Kafka loop around any connector (with
``retry``, ``ratelimit``, ``circuit``, ``ledger``, ``offsets`` and ``outcomes``);
``registry`` finds connectors through the ``rota.connectors`` entry points. The built-in
connectors are ``log``, ``webhook``, ``email`` (SMTP), ``sms`` (Twilio), ``push`` (FCM)
and ``kafka`` (forward to a topic), with ``templates``, ``httpclient``, ``secrets``,
``unsubscribe`` and ``privacy`` shared among them. ``feedback`` is the receiver of
provider callbacks, ``cli`` is ``rota connector`` and ``rota feedback``. Importing this
package registers nothing.
"""
