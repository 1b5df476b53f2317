"""Actuator backends: what happens to a part after the decision.

All implement ``hardware.base.Actuator``: ``actuate(part_id, action)`` never blocks the
inspection loop; a driver that talks to slow hardware queues the command, writes it
on its own thread, and counts every command it could not carry out in ``faults``.

Modbus coil semantics: with ``pulse_ms == 0`` the coils are levels that show the
decision of the latest part (REJECT sets the reject coil, HOLD the hold coil, PASS
clears both); with ``pulse_ms > 0`` REJECT/HOLD pulse their coil and PASS writes
nothing, for a PLC that latches the pulse into its shift register.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter

from hardware.errors import ActuatorError

log = logging.getLogger(__name__)

ACTIONS = ("PASS", "HOLD", "REJECT")
GPIOD_HINT = "install the libgpiod v2 Python bindings: pip install 'gpiod>=2'"
_STOP = object()


def _check_action(action: str) -> None:
    if action not in ACTIONS:
        raise ActuatorError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")


def _check_release(action: str) -> None:
    if action not in ("PASS", "REJECT"):
        raise ActuatorError(f"a held part is released (PASS) or rejected (REJECT), not {action!r}")


class SimulatedActuator:
    """Records every command as (part_id, action, monotonic time) in ``calls``, held parts' releases
    in ``released``."""

    def __init__(self) -> None:
        self.faults = 0
        self.calls: list[tuple[str, str, float]] = []
        self.released: list[tuple[str, str, float]] = []
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def actuate(self, part_id: str, action: str) -> None:
        _check_action(action)
        with self._lock:
            self.calls.append((part_id, action, time.monotonic()))
            self.counts[action] += 1

    def release(self, part_id: str, action: str) -> None:
        _check_release(action)
        with self._lock:
            self.released.append((part_id, action, time.monotonic()))

    def close(self) -> None:
        pass


class _QueuedWriter:
    """A bounded command queue drained by one worker thread, with timed coil resets."""

    def __init__(self, name: str, queue_size: int):
        self.faults = 0  # commands that failed or were dropped, since the start
        self._fault_text: str | None = None  # the latest failure, until a command gets through again
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._cond = threading.Condition()
        self._pending = 0  # queued or being written, plus pulses not yet reset
        self._resets: dict[object, float] = {}  # target -> monotonic time to switch it off
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _fault(self, message: str, *args) -> None:
        with self._cond:
            self.faults += 1
            self._fault_text = message % args
        log.warning(message, *args)

    def fault(self) -> str | None:
        """What is wrong with the actuator now (its latest failure, until a command succeeds), or None."""
        with self._cond:
            return self._fault_text

    def submit(self, item: object) -> None:
        if self._closed:
            self._fault("%s: command %r after close dropped", self._thread.name, item)
            return
        with self._cond:
            self._pending += 1
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            with self._cond:
                self._pending -= 1
                self._cond.notify_all()
            self._fault("%s: command queue full, command %r dropped", self._thread.name, item)

    def flush(self, timeout: float) -> bool:
        """Wait until every queued command and pulse is written (or failed)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def pending(self) -> int:
        with self._cond:
            return self._pending

    def _done(self, n: int = 1) -> None:
        with self._cond:
            self._pending -= n
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            timeout = None
            if self._resets:
                timeout = max(0.0, min(self._resets.values()) - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            now = time.monotonic()
            for target in [t for t, at in self._resets.items() if at <= now or item is _STOP]:
                del self._resets[target]
                self._guarded(self.reset, target)
                self._done()
            if item is _STOP:
                break
            if item is not None:
                self._guarded(self.write, item)
                self._done()

    def _guarded(self, fn, arg) -> None:
        try:
            fn(arg)
        except Exception as exc:  # a driver failure must never kill the writer thread
            self._fault("%s: %s failed: %s", self._thread.name, arg, exc)
        else:
            with self._cond:
                self._fault_text = None

    def schedule_reset(self, target: object, pulse_s: float) -> None:
        """Switch ``target`` off after ``pulse_s``; a new pulse extends the running one."""
        if target not in self._resets:
            with self._cond:
                self._pending += 1
        self._resets[target] = time.monotonic() + pulse_s

    def stop(self, timeout: float = 2.0) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.warning("%s: queue still full at close", self._thread.name)
        self._thread.join(timeout)

    # Implemented by the drivers; run on the worker thread only.
    def write(self, item) -> None:
        raise NotImplementedError

    def reset(self, target) -> None:
        raise NotImplementedError


#: Held parts whose numbers a Modbus actuator keeps for their release.
HELD_NUMBERS_KEPT = 10000


class ModbusActuator(_QueuedWriter):
    """Reject (and hold) coils of a PLC over Modbus TCP, via pymodbus 3.

    With ``result_register`` set, every part's result also goes to the PLC the way reject gates
    track parts: three holding registers from ``result_register`` hold the part's sequence number
    (high word, low word; 1 for the first part, in trigger order) and its action (``ACTION_CODES``:
    1 PASS, 2 HOLD, 3 REJECT). With ``ready_coil`` and ``ack_coil`` the result is handed over: the
    edge waits for "result acknowledged" to be clear (the PLC took the previous result), writes the
    registers, sets "result ready", waits for the PLC to set "result acknowledged", then clears
    "result ready" (the PLC then clears its acknowledgement): each wait at most ``handshake_timeout_s``.
    A result not acknowledged in time is a fault (alarmed by the edge), and the next one follows.
    """

    ACTION_CODES = {"PASS": 1, "HOLD": 2, "REJECT": 3}

    def __init__(self, host: str, port: int = 502, unit: int = 1, reject_coil: int = 0,
                 hold_coil: int | None = None, pulse_ms: int = 0, timeout_s: float = 1.0,
                 queue_size: int = 256, result_register: int | None = None, ready_coil: int | None = None,
                 ack_coil: int | None = None, handshake_timeout_s: float = 1.0):
        try:
            from pymodbus.client import ModbusTcpClient
        except ImportError as exc:
            raise ActuatorError("the Modbus actuator needs pymodbus: pip install 'pymodbus>=3.6'") from exc
        if pulse_ms < 0 or timeout_s <= 0:
            raise ActuatorError(f"pulse_ms must be >= 0 and timeout_s > 0, got {pulse_ms} and {timeout_s}")
        if (ready_coil is None) != (ack_coil is None) or (ready_coil is not None and result_register is None):
            raise ActuatorError("the result handshake needs result_register, ready_coil and ack_coil together")
        self.host, self.port, self.unit = host, port, unit
        self.reject_coil, self.hold_coil = reject_coil, hold_coil
        self.pulse_s = pulse_ms / 1000.0
        self.result_register, self.ready_coil, self.ack_coil = result_register, ready_coil, ack_coil
        self.handshake_timeout_s = handshake_timeout_s
        # The last part's number given out: numbered as actuate() is called (the pipeline calls it in
        # trigger order), so a command dropped on the way leaves a gap the PLC can see instead of
        # shifting every later part's number by one.
        self.sequence = 0
        self._sequence_lock = threading.Lock()
        # Held parts' numbers, so their release reaches the PLC under the number it tracks them by.
        self._held: dict[str, int] = {}
        # retries=0: a late reject is worse than a counted fault; the pipeline alarms on faults.
        self._client = ModbusTcpClient(host, port=port, timeout=timeout_s, retries=0)
        super().__init__(f"modbus-{host}:{port}", queue_size)

    def actuate(self, part_id: str, action: str) -> None:
        _check_action(action)
        if self.result_register is None:  # coils only: nothing to write for a PASS in pulse mode
            if self.pulse_s and action == "PASS":
                return
            if action == "HOLD" and self.hold_coil is None and self.pulse_s:
                return
            self.submit((part_id, action, None))
            return
        with self._sequence_lock:
            self.sequence += 1
            seq = self.sequence & 0xFFFFFFFF
            if action == "HOLD":
                self._held[part_id] = seq
                if len(self._held) > HELD_NUMBERS_KEPT:
                    self._held.pop(next(iter(self._held)))  # the oldest: long since decided by the PLC's own timeout
        self.submit((part_id, action, seq))

    def release(self, part_id: str, action: str) -> None:
        """The held part's final result: the same number again, now with PASS (released) or REJECT; the
        hold coil drops and the reject coil follows the action."""
        _check_release(action)
        with self._sequence_lock:
            seq = self._held.pop(part_id, None)
        if self.result_register is not None and seq is None:
            self._fault("%s: release of part %s, which was not held here", self._thread.name, part_id)
            return
        self.submit((part_id, action, seq))

    def _write_coil(self, coil: int, value: bool) -> None:
        from pymodbus.exceptions import ModbusException

        try:
            if not self._client.connected and not self._client.connect():
                raise ActuatorError(f"cannot connect to Modbus server {self.host}:{self.port}")
            reply = self._client.write_coil(coil, value, device_id=self.unit)
            if reply.isError():
                raise ActuatorError(f"Modbus server {self.host}:{self.port} refused coil {coil}: {reply}")
        except (ModbusException, OSError, ActuatorError):
            self._client.close()  # reconnect on the next command
            raise

    def _send_result(self, register: int, part_id: str, action: str, seq: int) -> None:
        """The part's number and action in the result registers, then the ready/acknowledge handshake."""
        from pymodbus.exceptions import ModbusException

        try:
            if not self._client.connected and not self._client.connect():
                raise ActuatorError(f"cannot connect to Modbus server {self.host}:{self.port}")
            if self.ack_coil is not None:
                # Four-phase handshake: the PLC has taken the previous result (acknowledge cleared)
                # before this one is offered, or a fast line would run two results into one.
                self._wait_coil(self.ack_coil, False, f"the PLC still acknowledges the result before {seq}")
            reply = self._client.write_registers(register, [seq >> 16, seq & 0xFFFF,
                                                                        self.ACTION_CODES[action]], device_id=self.unit)
            if reply.isError():
                raise ActuatorError(f"Modbus server {self.host}:{self.port} refused the result registers: {reply}")
        except (ModbusException, OSError) as exc:
            self._client.close()
            raise ActuatorError(f"cannot write the result of part {part_id}: {exc}") from exc
        if self.ready_coil is None or self.ack_coil is None:
            return
        self._write_coil(self.ready_coil, True)
        try:
            self._wait_coil(self.ack_coil, True, f"the PLC did not acknowledge result {seq} (part {part_id})")
        finally:
            self._write_coil(self.ready_coil, False)

    def _wait_coil(self, coil: int, value: bool, what: str) -> None:
        deadline = time.monotonic() + self.handshake_timeout_s
        while self._coil_is_set(coil) != value:
            if time.monotonic() > deadline:
                raise ActuatorError(f"{what} within {self.handshake_timeout_s} s")
            time.sleep(0.002)  # polling the PLC's coil, as its scan would

    def _coil_is_set(self, coil: int) -> bool:
        reply = self._client.read_coils(coil, count=1, device_id=self.unit)
        if reply.isError():
            raise ActuatorError(f"Modbus server {self.host}:{self.port} refused reading coil {coil}: {reply}")
        return bool(reply.bits[0])

    def write(self, item: tuple[str, str, int | None]) -> None:
        part_id, action, seq = item
        if self.result_register is not None and seq is not None:
            self._send_result(self.result_register, part_id, action, seq)
        wanted = {self.reject_coil: action == "REJECT"}
        if self.hold_coil is not None:
            wanted[self.hold_coil] = action == "HOLD"
        for coil, on in wanted.items():
            if self.pulse_s and not on:
                continue  # pulse mode: only switch on; the reset switches off
            self._write_coil(coil, on)
            if self.pulse_s:
                self.schedule_reset(coil, self.pulse_s)
        log.debug("modbus %s:%d part %s -> %s", self.host, self.port, part_id, action)

    def reset(self, coil: int) -> None:
        self._write_coil(coil, False)

    def close(self) -> None:
        self.stop()
        self._client.close()


class GpioActuator(_QueuedWriter):
    """Pulses a GPIO output (a reject air jet or a diverter solenoid) on REJECT."""

    def __init__(self, chip: str, line: int, pulse_ms: int = 50):
        try:
            import gpiod
            from gpiod.line import Direction, Value
        except ImportError as exc:
            raise ActuatorError(f"GPIO actuator on {chip} line {line} needs gpiod; {GPIOD_HINT}") from exc
        if pulse_ms <= 0:
            raise ActuatorError(f"GPIO actuator pulse_ms must be > 0, got {pulse_ms}")
        settings = gpiod.LineSettings(direction=Direction.OUTPUT, output_value=Value.INACTIVE)
        try:
            self._request = gpiod.request_lines(chip, consumer="qcloop-reject", config={line: settings})
        except (OSError, ValueError) as exc:
            raise ActuatorError(f"cannot request GPIO {chip} line {line}: {exc}") from exc
        self._value = Value
        self.chip, self.line, self.pulse_s = chip, line, pulse_ms / 1000.0
        super().__init__(f"gpio-{chip}:{line}", queue_size=256)

    def actuate(self, part_id: str, action: str) -> None:
        _check_action(action)
        if action == "REJECT":
            self.submit(part_id)

    def release(self, part_id: str, action: str) -> None:
        """A held part ruled a fault (or left to the fallback REJECT) is pulsed off the hold lane; a released
        one goes on (the jet stays off)."""
        _check_release(action)
        if action == "REJECT":
            self.submit(part_id)

    def write(self, part_id: str) -> None:
        self._request.set_value(self.line, self._value.ACTIVE)
        self.schedule_reset(self.line, self.pulse_s)

    def reset(self, line: int) -> None:
        self._request.set_value(line, self._value.INACTIVE)

    def close(self) -> None:
        self.stop()
        self._request.release()
