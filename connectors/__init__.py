"""Channel connectors: deliver next-best-actions and report outcomes.

``base`` is the contract, ``runner`` the Kafka loop around any connector, ``registry``
finds connectors through the ``rota.connectors`` entry points, ``log`` and ``webhook``
are the built-in ones, ``cli`` is ``rota connector``. Importing this package registers
nothing.
"""
