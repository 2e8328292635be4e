"""echolab's user-space packet engine: holds NFQUEUE'd packets and releases them on time.

``schedule`` decides (pure: a seeded RNG, no I/O), ``engine`` moves packets (through
``compiled``, the C packet loop, by default), ``spin`` learns how long to poll before a
deadline, ``nfq`` is what the Python loop and the probe use of the NetfilterQueue binding,
``idle`` holds the note of a kernel-only fault, ``probe`` tells the harness what this kernel can
do. Runs in a sidecar sharing the target's network namespace; both ``run`` and ``idle`` answer
the sidecars' control protocol (``echolab_control``).
"""
