"""A TCP proxy with Toxiproxy's toxics, for faults packets cannot express (backend 3).

Pure standard library, so the same files run in the harness (``harness.faults.proxy``) and in
the proxy's image (``echolab_proxy``, built by ``image.py`` from ``faults/proxy/Dockerfile``):

- ``toxics/``: one module per toxic, each a pure transformation over a stream of chunks
  (``toxics/base.py`` says what a toxic is);
- ``chain.py``: the toxics of one direction of one connection, and which connections a toxic
  hits (``toxicity``, seeded);
- ``link.py``: the only I/O: accept, connect upstream, pump both directions;
- ``control.py``: add and remove toxics at run time (JSON lines on the container's loopback);
- ``image.py`` and ``api.py`` (Docker, harness side only): ``toxic_proxy(lab, toxics=[...])``.
"""
