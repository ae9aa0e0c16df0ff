"""The peer's server: a pymodbus RTU server with 16 holding registers on a serial port."""

from __future__ import annotations

import asyncio
import sys

from pymodbus import FramerType
from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import StartAsyncSerialServer


async def main(port: str) -> None:
    device = ModbusDeviceContext(hr=ModbusSequentialDataBlock(1, list(range(100))))
    context = ModbusServerContext(devices=device, single=True)
    await StartAsyncSerialServer(context=context, framer=FramerType.RTU, port=port, baudrate=115200)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
