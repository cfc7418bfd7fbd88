"""Monitoring: a current window of served (or any other) rows against the reference, with
Evidently reports, an explicit gate, a browsable history and a traffic simulator."""
