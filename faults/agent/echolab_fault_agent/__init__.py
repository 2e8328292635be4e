"""echolab's fault agent: on one Swarm node, fault sidecars in its tasks' network namespaces.

A Swarm service cannot join another container's network namespace (moby 33055), so the fault
sidecar of one machine cannot become a service. The agent, a global service with its node's
Docker socket, starts the same sidecar (the fault engine's image) beside a task on its node,
``--network container:<task>``, with ``NET_ADMIN`` only, and runs the plan the harness made:
the harness decides what to apply (its backends' plans, argument vectors), the agent only
executes Docker operations on its node. Requests are one JSON object each, answered with one
JSON line, as the sidecars' own control (``python3 -m echolab_fault_agent '<json>'``, exec'd
into the agent's task); see ``agent.OPS``. Nothing listens on a network.

This package never imports the harness: the image holds it and the Docker SDK, nothing else.
"""

LAB_ENV = "ECHOLAB_LAB"  # the lab whose sidecars the agent removes when it stops
