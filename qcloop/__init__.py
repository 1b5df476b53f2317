"""qcloop: the shared contracts, the ground floor every part stands on.

The wire format of every MQTT message (wire), config loading (configfile), the base
errors (errors), durable file writes (files), alarms (alarms), broker settings and the
client they make (mqttconn), and how a part adds its commands to ``qc`` (commands).
It imports no part. Importing it never imports numpy, onnxruntime, Flask or torch.
"""

__version__ = "0.1.0"
