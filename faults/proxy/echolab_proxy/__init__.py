"""A TCP proxy with Toxiproxy's toxics, for faults packets cannot express (backend 3).

Pure standard library; runs in the proxy's image (``faults/proxy/Dockerfile``):

- ``toxics/``: one module per toxic, each a pure transformation over a stream of chunks
  (``toxics/base.py`` says what a toxic is) that declares the unit of each attribute
  (``toxics.UNITS``, for the harness, which turns "20ms" or "1mbit" into these numbers);
- ``chain.py``: the toxics of one direction of one connection, and which connections a toxic
  hits (``toxicity``, seeded);
- ``link.py``: the only I/O: accept, connect upstream, pump both directions;
- ``control.py``: the answers to the sidecars' control protocol (``echolab_control``): add and
  remove toxics at run time, status, note.
"""
