"""The physical seams of an inspection station: cameras, triggers, reject actuators.

Each seam is a Protocol (hardware.base) with a simulator beside the real driver;
``hardware.factory`` picks the backend from the ``type`` field of its config table.
Also home of the synthetic part generator used by the demo, the benchmarks and tests.
"""
