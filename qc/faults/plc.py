"""A PLC on loopback for the fault rig: a real pymodbus TCP server and the program a reject gate runs.

Also the Modbus server the tests drive the actuator against (``program=False``). The program scans
like a PLC: on "result ready" it reads the part's number and action from the
holding registers (hardware.actuators.ModbusActuator), keeps them, sets "acknowledged", and clears
it once "ready" drops. ``results`` is what the PLC saw, in the order it saw it: the fault bench
checks it for trigger order and counts what an outage cost.
"""
from __future__ import annotations

import asyncio
import threading
from typing import Any

from qc.faults.rig import FaultRigError

RESULT_REGISTER, READY_COIL, ACK_COIL, REJECT_COIL = 4, 5, 6, 0


class LoopbackPlc:
    def __init__(self, port: int, program: bool = True, answer: bool = True):
        """``program`` False: the Modbus server alone (coils and registers, no scan); ``answer`` False:
        the program sees "result ready" but never acknowledges (a PLC that has stopped taking results)."""
        self.port, self.program, self.answer = port, program, answer
        self.results: list[tuple[int, int]] = []  # (part number, action code), as the PLC read them
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._threads: list[threading.Thread] = []

    def start(self) -> LoopbackPlc:
        self._stop.clear()
        self._ready.clear()
        server = threading.Thread(target=self._serve, name="plc-server", daemon=True)
        server.start()
        if not self._ready.wait(10):
            raise FaultRigError(f"the loopback PLC did not start on port {self.port}")
        self._threads = [server]
        if self.program:
            scan = threading.Thread(target=self._scan, name="plc-scan", daemon=True)
            scan.start()
            self._threads.append(scan)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._loop is not None and self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop).result(10)
        for t in self._threads:
            t.join(10)
        self._server = self._loop = None

    def _serve(self) -> None:
        from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
        from pymodbus.server import ModbusTcpServer

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            device = ModbusDeviceContext(co=ModbusSequentialDataBlock(1, [False] * 16),
                                         hr=ModbusSequentialDataBlock(1, [0] * 16))
            self._server = ModbusTcpServer(ModbusServerContext(devices=device), address=("127.0.0.1", self.port))
            await self._server.serve_forever(background=True)
            self._ready.set()
            await self._server.serving

        asyncio.run(main())

    def _scan(self) -> None:
        from pymodbus.client import ModbusTcpClient
        from pymodbus.exceptions import ModbusException

        client = ModbusTcpClient("127.0.0.1", port=self.port, timeout=2)
        client.connect()
        try:
            self._scan_until_stopped(client)
        except (ModbusException, OSError):
            if not self._stop.is_set():  # the server going away at stop() is how the scan ends
                raise
        finally:
            client.close()

    def _scan_until_stopped(self, client: Any) -> None:
        acked = False
        while not self._stop.is_set():
            ready = client.read_coils(READY_COIL, count=1, device_id=1)
            if ready.isError():
                continue
            if ready.bits[0] and not acked and self.answer:
                regs = client.read_holding_registers(RESULT_REGISTER, count=3, device_id=1).registers
                self.results.append(((regs[0] << 16) | regs[1], regs[2]))
                client.write_coil(ACK_COIL, True, device_id=1)
                acked = True
            elif not ready.bits[0] and acked:
                client.write_coil(ACK_COIL, False, device_id=1)
                acked = False
            self._stop.wait(0.001)  # the scan cycle
