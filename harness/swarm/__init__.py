"""echolab past one machine: the lab on Docker Swarm (issue 12).

``lab``: ``SwarmLab`` (what ``Lab(spec, engine="swarm")`` gives), on the swarm of ``cluster``,
from the images of ``registry``, deploying what ``services`` describes; ``jobs``: a batch of
client tasks read back; ``agent``: faults through each node's fault agent; ``teardown``.
"""
