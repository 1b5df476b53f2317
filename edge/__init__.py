"""The edge inspection runtime: capture -> detect -> decide -> actuate, for every part.

Runs with numpy, opencv-python-headless, onnxruntime, paho-mqtt and prometheus-client
only. Never imports the station or training packages (a test checks this).
"""
