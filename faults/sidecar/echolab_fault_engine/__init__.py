"""echolab's user-space packet engine: holds NFQUEUE'd packets and releases them on time.

``schedule`` decides (pure: a seeded RNG, no I/O), ``engine`` moves packets, ``spin`` learns how
long to poll before a deadline, ``probe`` tells the harness what this kernel can do. Runs in a
sidecar sharing the target's network namespace.
"""
