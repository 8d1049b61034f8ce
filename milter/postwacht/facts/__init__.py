"""Facts: what the outside world is, learnt over DNS, HTTPS (MTA-STS) and RDAP.

Every answer comes back as a core fact value; a lookup that fails is a fact too
(`Method.FAILURE`, a check that is unknown), never "nothing there". Counting goes through
the telemetry interface handed in; nothing here knows Prometheus.
"""
