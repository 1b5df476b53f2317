"""The retraining side: data from verdicts, detector families, training, calibration, the gate, release."""
