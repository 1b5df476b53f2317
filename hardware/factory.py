"""Build the device backends named by the ``type`` field of their config tables.

Backends are imported when chosen, so a box without GPIO or Modbus never loads them.
Cameras are wrapped in ``StaleGuard`` when ``repeat_limit > 0``, except a synthetic
camera that replays a single prerendered frame (``prerender == 1``): that one repeats
by design. A prerender cycle of two or more frames never repeats back to back, so
it is guarded like any other camera. A looping folder of one image is, by the
guard's definition, a frozen camera: set ``repeat_limit = 0`` for such a replay.
"""
from __future__ import annotations

from hardware.base import Actuator, Camera, Trigger
from hardware.config import ActuatorConfig, CameraConfig, TriggerConfig


def make_camera(cfg: CameraConfig) -> Camera:
    from hardware import cameras

    camera: Camera
    if cfg.type == "synthetic":
        from hardware.synthetic import PartGenerator

        gen = PartGenerator(seed=cfg.seed, width=cfg.width, height=cfg.height,
                            defect_rate=cfg.defect_rate, artefact_rate=cfg.artefact_rate)
        camera = cameras.SyntheticCamera(gen, prerender=cfg.prerender)
        if cfg.prerender == 1:
            return camera
    elif cfg.type in ("folder", "video") and cfg.path is not None:  # the config refuses these without a path
        replay = cameras.FolderCamera if cfg.type == "folder" else cameras.VideoFileCamera
        camera = replay(cfg.path, loop=cfg.loop)
    elif cfg.type == "opencv":
        camera = cameras.OpenCVCamera(cfg.source, stale_after_s=cfg.stale_after_s)
    else:  # pragma: no cover - the config loader only admits the types above
        raise ValueError(f"unknown camera type {cfg.type!r}")
    if cfg.repeat_limit > 0:
        camera = cameras.StaleGuard(camera, repeat_limit=cfg.repeat_limit)
    return camera


def make_trigger(cfg: TriggerConfig) -> Trigger:
    from hardware import triggers

    if cfg.type == "gpio":
        return triggers.GpioTrigger(cfg.chip, cfg.line, edge=cfg.edge)
    return triggers.SoftwareTrigger(cfg.rate_hz)


def make_actuator(cfg: ActuatorConfig) -> Actuator:
    from hardware import actuators

    if cfg.type == "modbus":
        return actuators.ModbusActuator(cfg.host, port=cfg.port, unit=cfg.unit, reject_coil=cfg.reject_coil,
                                        hold_coil=None if cfg.hold_coil < 0 else cfg.hold_coil,
                                        pulse_ms=cfg.pulse_ms, timeout_s=cfg.timeout_s,
                                        result_register=None if cfg.result_register < 0 else cfg.result_register,
                                        ready_coil=None if cfg.ready_coil < 0 else cfg.ready_coil,
                                        ack_coil=None if cfg.ack_coil < 0 else cfg.ack_coil,
                                        handshake_timeout_s=cfg.handshake_timeout_s)
    if cfg.type == "gpio":
        return actuators.GpioActuator(cfg.chip, cfg.line, pulse_ms=cfg.pulse_ms or 50)
    return actuators.SimulatedActuator()
