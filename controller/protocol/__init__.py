"""The serial protocol between the controller and a rig's firmware (docs/protocol.md):
COBS framing and CRC-16 without I/O (`codec`), the frozen wire tables and the one
`PROTOCOL_VERSION` (`wire`), and the document's test vectors (`vectors`).

Neutral ground: the controller's serial backend and the simulated firmware both import it,
and it imports only `controller.rig`-level names of its own tables.
"""

from controller.protocol.wire import PROTOCOL_VERSION

__all__ = ["PROTOCOL_VERSION"]
