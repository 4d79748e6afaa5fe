"""Test-only: Earshot's telemetry switches undone, for the offline test's control run.

Put this folder on a server's PYTHONPATH and engines/telemetry.py does nothing: the libraries
keep their own defaults. The control shows that the syscall trace catches what they then do.
"""

import os

from engines import telemetry

for _name in telemetry.SWITCHES:
    os.environ.pop(_name, None)
telemetry.switch_off = lambda: None
telemetry.quiet_onnxruntime = lambda onnxruntime: None
