"""Experiments: a declared sweep (TOML) run on labs, its results stored with their provenance,
reported as one self-contained HTML file (flent's workflow, with echolab's verdicts).

Layers inside, each importing only those below (checked by ``make lint``): ``cli`` >
``runner`` | ``report`` | ``compare`` > ``live`` | ``figures`` | ``provenance`` > ``schedule`` |
``view`` > ``store`` > ``stats`` | ``expand`` > ``declare``. ``declare``, ``expand``, ``stats``
and ``view`` are pure: text or records in, data out; I/O is in ``store``, ``runner``, ``cli``.
"""
