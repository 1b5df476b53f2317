"""Actuators against a real pymodbus TCP server on loopback; triggers; config and factory."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from hardware.actuators import ModbusActuator, SimulatedActuator
from hardware.base import Actuator, Camera, Trigger
from hardware.cameras import StaleGuard, SyntheticCamera
from hardware.config import CameraConfig, HardwareConfig
from hardware.errors import ActuatorError, TriggerError
from hardware.factory import make_actuator, make_camera, make_trigger
from hardware.triggers import GpioTrigger, SoftwareTrigger
from qc.faults.plc import LoopbackPlc
from qcloop import configfile
from qcloop.errors import ConfigError

REJECT, HOLD = 3, 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(condition, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def make_plc():
    """Loopback PLCs (qc.faults.plc) with ``coils()`` to read coils 0-7 as the line sees them."""
    from pymodbus.client import ModbusTcpClient

    made = []

    def make(program: bool = False, answer: bool = True) -> LoopbackPlc:
        server = LoopbackPlc(_free_port(), program=program, answer=answer).start()
        reader = ModbusTcpClient("127.0.0.1", port=server.port, timeout=2)
        assert reader.connect()

        def coils() -> list[bool]:
            reply = reader.read_coils(0, count=8, device_id=1)
            assert not reply.isError(), reply
            return list(reply.bits[:8])

        server.coils = coils
        made.append((server, reader))
        return server

    yield make
    for server, reader in made:
        reader.close()
        server.stop()


@pytest.fixture
def plc(make_plc):
    """The Modbus server alone: the PLC's coils and registers, no program."""
    return make_plc()


def test_simulated_actuator_records_calls_from_threads():
    act = SimulatedActuator()
    assert isinstance(act, Actuator)
    threads = [threading.Thread(target=lambda k=k: [act.actuate(f"{k}-{i}", "REJECT") for i in range(100)])
               for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    act.actuate("x", "PASS")
    assert len(act.calls) == 401
    assert act.counts["REJECT"] == 400
    assert act.counts["PASS"] == 1
    assert act.calls[-1][:2] == ("x", "PASS") and act.faults == 0
    with pytest.raises(ActuatorError, match="EJECT"):
        act.actuate("y", "EJECT")


def test_modbus_reject_and_hold_hit_their_coils(plc):
    act = ModbusActuator("127.0.0.1", port=plc.port, reject_coil=REJECT, hold_coil=HOLD, timeout_s=2)
    try:
        assert plc.coils()[REJECT] is False
        act.actuate("p1", "REJECT")
        assert act.flush(10)
        assert plc.coils()[REJECT] is True and plc.coils()[HOLD] is False
        act.actuate("p2", "HOLD")
        assert act.flush(10)
        assert plc.coils()[HOLD] is True and plc.coils()[REJECT] is False
        act.actuate("p3", "PASS")
        assert act.flush(10)
        assert plc.coils()[HOLD] is False and plc.coils()[REJECT] is False
        assert act.faults == 0
    finally:
        act.close()


def test_modbus_pulse_switches_the_coil_off_again(plc):
    act = ModbusActuator("127.0.0.1", port=plc.port, reject_coil=REJECT, pulse_ms=30, timeout_s=2)
    try:
        act.actuate("p1", "REJECT")
        _wait_for(lambda: plc.coils()[REJECT], what="reject coil on")
        assert act.flush(10)  # includes the pulse's reset
        assert plc.coils()[REJECT] is False and act.faults == 0
    finally:
        act.close()


def test_modbus_dead_server_counts_faults_and_reconnects():
    port = _free_port()
    act = ModbusActuator("127.0.0.1", port=port, reject_coil=REJECT, timeout_s=0.5)
    try:
        act.actuate("p1", "REJECT")
        assert act.flush(10)
        assert act.faults == 1
        server = LoopbackPlc(port, program=False).start()  # the PLC comes back: the next command gets through
        try:
            act.actuate("p2", "REJECT")
            assert act.flush(10)
            assert act.faults == 1
            from pymodbus.client import ModbusTcpClient

            reader = ModbusTcpClient("127.0.0.1", port=port, timeout=2)
            assert reader.read_coils(REJECT, count=1, device_id=1).bits[0] is True
            reader.close()
        finally:
            server.stop()
    finally:
        act.close()


def test_modbus_actuate_never_blocks_on_a_hung_plc():
    # A listener that accepts connections but never answers: every write hangs until timeout.
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)
    act = ModbusActuator("127.0.0.1", port=hung.getsockname()[1], reject_coil=REJECT, timeout_s=5,
                         queue_size=2)
    try:
        for i in range(10):  # returns at once although the worker is stuck on the first write
            act.actuate(f"p{i}", "REJECT")
        assert act.faults >= 7  # commands beyond the queue are dropped and counted
        assert act.pending() >= 1
    finally:
        hung.close()
        act.close()


def test_software_trigger_free_running_and_close():
    trig = SoftwareTrigger(0)
    assert isinstance(trig, Trigger)
    times = [trig.wait(0) for _ in range(100)]
    assert all(t is not None for t in times) and times == sorted(times)
    trig.close()
    assert trig.wait(1.0) is None


def test_software_trigger_keeps_schedule_and_hands_out_each_part_with_its_arrival_time():
    trig = SoftwareTrigger(0.5)  # one part every 2 s
    first = trig.wait(0.0)
    assert first is not None and first <= time.monotonic()  # the first part is there at once
    assert trig.wait(0.01) is None  # the next one is not due yet
    fast = SoftwareTrigger(200, backlog=16)
    arrivals = [fast.wait(1.0) for _ in range(5)]
    start = fast._start
    assert arrivals == [start + n / 200 for n in range(5)]
    _wait_for(lambda: time.monotonic() > start + 10 / 200, what="five more parts to arrive")
    # Parts that arrived while nobody waited are queued, each with its own time, oldest first.
    queued = [fast.wait(0.0) for _ in range(5)]
    assert queued == [start + n / 200 for n in range(5, 10)] and fast.missed == 0
    _wait_for(lambda: time.monotonic() > start + 40 / 200, what="thirty more parts to arrive")
    after = fast.wait(0.0)  # 30 or more waiting: beyond the 16 the queue holds, the oldest are lost
    assert fast.missed >= 14 and after == start + (10 + fast.missed) / 200
    with pytest.raises(TriggerError, match="rate_hz"):
        SoftwareTrigger(-1)
    with pytest.raises(TriggerError, match="backlog"):
        SoftwareTrigger(10, backlog=0)


def test_gpio_without_gpiod_says_how_to_install():
    try:
        import gpiod  # noqa: F401
    except ImportError:
        with pytest.raises(TriggerError, match="pip install"):
            GpioTrigger("/dev/gpiochip0", 4)
    else:
        pytest.skip("gpiod is installed here")


HARDWARE_TOML = """
[camera]
type = "synthetic"
seed = 4
width = 160
height = 128
prerender = 3

[trigger]
rate_hz = 0

[actuator]
type = "simulated"
"""


def _load(text: str) -> HardwareConfig:
    import tomllib

    return configfile.from_dict(tomllib.loads(text), HardwareConfig, source="hw.toml")


def test_config_from_toml_builds_the_simulators():
    cfg = _load(HARDWARE_TOML)
    assert cfg.camera.prerender == 3 and cfg.trigger.rate_hz == 0.0
    camera, trigger, actuator = make_camera(cfg.camera), make_trigger(cfg.trigger), make_actuator(cfg.actuator)
    assert isinstance(camera, StaleGuard) and isinstance(camera.camera, SyntheticCamera)
    assert isinstance(camera, Camera)
    assert isinstance(trigger, SoftwareTrigger)
    assert isinstance(actuator, SimulatedActuator)
    assert trigger.wait(0) is not None and camera.capture("p").image.shape == (128, 160)
    single = make_camera(CameraConfig(prerender=1, width=96, height=96))
    assert isinstance(single, SyntheticCamera)  # one frame repeated by design: no guard
    for i in range(5):
        single.capture(str(i))


def test_modbus_actuator_from_config(plc):
    cfg = _load(f'[actuator]\ntype = "modbus"\nport = {plc.port}\nreject_coil = {REJECT}\n')
    act = make_actuator(cfg.actuator)
    try:
        assert isinstance(act, ModbusActuator) and act.hold_coil is None
        act.actuate("p", "REJECT")
        assert act.flush(10) and plc.coils()[REJECT] is True
    finally:
        act.close()


@pytest.mark.parametrize("text, key", [
    ('[camera]\nfps = 30\n', "[camera].fps: unknown key"),
    ('[trigger]\nrate_hz = "fast"\n', "[trigger].rate_hz: must be a number"),
    ('[actuator]\ntype = "relay"\n', "[actuator].type: must be one of"),
    ('[camera]\ntype = "folder"\n', "[camera].path: camera type 'folder' needs a path"),
    ('[actuator]\ntype = "modbus"\nready_coil = 5\n', "[actuator].ready_coil: the handshake needs result_register"),
    ('[camera]\ntype = "opencv"\n', "[camera].source"),
    ('[camera]\nrepeat_limit = 1\n', "[camera].repeat_limit"),
    ('[actuator]\nhold_coil = 0\n', "[actuator].hold_coil: must differ"),
    ('[actuator]\nport = 70000\n', "[actuator].port: must be <= 65535"),
])
def test_bad_config_names_the_key(text, key):
    with pytest.raises(ConfigError) as err:
        _load(text)
    assert key in str(err.value) and "hw.toml" in str(err.value)


def test_modbus_gives_the_plc_each_parts_number_and_result_with_a_handshake(make_plc):
    plc = make_plc(program=True)  # the reject gate's program: result in registers 4-6, ready 5, ack 6
    act = ModbusActuator("127.0.0.1", port=plc.port, reject_coil=0, result_register=4, ready_coil=5, ack_coil=6)
    try:
        for i, action in enumerate(["PASS", "REJECT", "HOLD", "PASS", "REJECT"]):
            act.actuate(f"part-{i}", action)
        assert act.flush(10)
        assert act.faults == 0
        assert plc.results == [(1, 1), (2, 3), (3, 2), (4, 1), (5, 3)]  # numbered in order, every part
        assert plc.coils()[0] is True  # and the reject coil follows the last result
    finally:
        act.close()


def test_a_result_the_plc_does_not_acknowledge_is_a_fault_and_the_next_follows(make_plc):
    plc = make_plc(program=True, answer=False)
    act = ModbusActuator("127.0.0.1", port=plc.port, reject_coil=0, result_register=4, ready_coil=5, ack_coil=6,
                         handshake_timeout_s=0.1)
    try:
        act.actuate("part-0", "REJECT")
        act.actuate("part-1", "PASS")
        assert act.flush(10)
        assert act.faults == 2
        assert "did not acknowledge result 2" in act.fault()
        assert plc.coils()[5] is False  # "result ready" is not left set
    finally:
        act.close()


def test_a_result_dropped_on_the_way_leaves_a_gap_in_the_numbers_not_a_shift(make_plc):
    # A PLC tracks parts by their numbers: if a dropped command shifted the numbers, every later
    # result would be read as the part before's, and a reject would land on the wrong part.
    plc = make_plc(program=True, answer=False)
    act = ModbusActuator("127.0.0.1", port=plc.port, reject_coil=0, result_register=4, ready_coil=5, ack_coil=6,
                         handshake_timeout_s=10, queue_size=1)
    try:
        act.actuate("part-1", "REJECT")
        _wait_for(lambda: plc.coils()[5], what="part 1 offered to the PLC")  # the writer holds part 1
        act.actuate("part-2", "PASS")  # waits in the queue
        act.actuate("part-3", "HOLD")  # the queue is full: dropped, counted
        assert act.faults == 1 and "queue full" in act.fault()
        plc.answer = True  # the PLC takes results again
        _wait_for(lambda: len(plc.results) == 2, what="parts 1 and 2 taken by the PLC")
        act.actuate("part-4", "HOLD")
        assert act.flush(10)
        assert plc.results == [(1, 3), (2, 1), (4, 2)]  # part 3 is missing; part 4 is still number 4
    finally:
        act.close()
