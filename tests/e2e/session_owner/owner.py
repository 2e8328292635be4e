"""A session owner for tests/e2e/test_sessions.py: start a lab, say so, live until killed.

It runs as a subprocess of the test on the host, or as the program of a container with the
Docker socket mounted (another PID namespace). Optional argv: the server and client images (in
the container, the lab's image ids: nothing is built there). It never cleans up: it is killed.
"""

import sys
import time

from harness import Lab, LabSpec

chosen = dict(zip(("server_image", "client_image"), sys.argv[1:3], strict=False))
lab = Lab(LabSpec(name="owned", **chosen))
lab.start()
print(f"ready {lab.id}", flush=True)
time.sleep(600)
