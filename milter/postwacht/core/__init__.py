"""The core: what a policy means for one message, as pure functions over immutable values.

Names, addresses, look-alikes, the compiled policy model, classification, the types of
the facts learnt about the outside world, the decision and its outcome at RCPT and at end
of message, and the answers of the Postfix tables. Nothing here reads a file, asks a
server, looks at a clock or keeps state between calls; facts come in as values and the
outcome goes out as a value. A test keeps it that way (`tests/unit/test_layers.py`).
"""
