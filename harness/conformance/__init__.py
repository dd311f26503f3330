"""Protocol conformance checks of devices from any vendor: a device is held to the protocol and
to its own declared map, whoever made it (issue "Interoperability").

One module per protocol, imported by name (``harness.conformance.modbus``,
``harness.conformance.fuzz``), so a check of one protocol never loads another's stack.
"""
