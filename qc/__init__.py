"""qc: the ``qc`` command and what it runs on one machine, above every part.

The entry point (qc.cli) gathers each part's commands; here too are the demo (the whole
loop on one box), the fault rig and the benchmarks that start several parts, and the
broker launcher and admin (ACLs, passwords). Nothing below imports this package.
"""
