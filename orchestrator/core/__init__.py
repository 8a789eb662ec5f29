"""The pure decision core: ``decide`` (state + event or timer -> Decision), the customer
``state`` and ``profile``, deterministic ``ids`` and ``localtime``. No I/O, no clock."""
